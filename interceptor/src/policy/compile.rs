//! From policy to the kernel's fast path.
//!
//! The kernel matches an exec by the binary's (device, inode) alone. A rule that depends
//! on nothing else compiles to an entry the kernel decides by itself. A rule that also
//! looks at argv, cwd, parent, environment or the agent makes its binary's entry `ask`
//! with [`DecidedBy::Userspace`]: the daemon judges the held exec with
//! [`Policy::evaluate_exec`] in microseconds and only asks a human when the answer is
//! `ask`. A rule naming programs by glob or basename cannot become inodes: it yields an
//! [`ExecFallback`] (userspace judges every exec of the agents it applies to), reported by
//! `policy show` and as a warning by `policy check`. Nothing is dropped silently.
//!
//! An `allow` or `audit` rule never needs a hold: the exec runs either way, every agent
//! exec is reported to the daemon, and the record is labelled by userspace.
//!
//! A `monitor` rule never puts `ask` or `deny` in the kernel, and never adds a hold or a
//! fallback. Where it would have made an entry stricter than the enforced one, the entry
//! is `audit` under the monitor rule's id with [`CompiledExecRule::shadow`] set: the exec
//! runs, the kernel reports it, and the daemon records the would-be decision
//! ([`Policy::evaluate_exec`] gives it as `Decision::shadow`). Monitor rules the kernel
//! cannot pick out by inode are listed in [`CompiledPolicy::monitored_in_userspace`].

use std::{collections::BTreeSet, os::unix::fs::MetadataExt as _};

use interceptor_common::{InodeKey, RULE_NAME_MAX};
use serde::Serialize;

use super::{Access, Action, Operation, Policy, kernel_dev, matcher::RuleMatcher};

/// Who takes the decision for a compiled entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecidedBy {
    /// The kernel's verdict is final.
    Kernel,
    /// The kernel holds (`ask`) and the daemon decides with the policy; it asks a human
    /// only when the policy's answer is `ask`.
    Userspace,
}

/// One `EXEC_RULES` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompiledExecRule {
    #[serde(with = "inode")]
    pub key: InodeKey,
    /// The rule path that resolved to `key` (the first, when several did).
    pub path: String,
    /// The kernel verdict.
    pub action: Action,
    /// 1-based index of the rule behind the verdict (for `Userspace`, the rule that made
    /// the kernel hold; the daemon's decision names the real winner).
    pub rule_id: u32,
    pub decided_by: DecidedBy,
    /// Shadow mode: `rule_id` is a `monitor` rule that would have done this (`ask` or
    /// `deny`; for a rule on argv too, only for the argv it names). The kernel verdict is
    /// `audit`: the exec runs and is reported, and the daemon records the would-be decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Action>,
}

/// Execs the kernel cannot pick out by inode, so it hands every agent exec no inode entry
/// names to userspace (for every agent: the kernel's agent ids do not capture the uid,
/// cgroup and launched-name selectors of the rules' agents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecFallback {
    /// Who the rules that need it apply to; `None`: every agent.
    pub agents: Option<Vec<String>>,
    /// Which rules (or `[defaults] exec`) need it.
    pub because: Vec<String>,
}

/// What an open entry matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum OpenTarget {
    /// This path; with its (device, inode) when it exists, so hardlinks match too.
    Exact {
        path: String,
        #[serde(with = "inode::optional")]
        inode: Option<InodeKey>,
    },
    /// Every path that starts with this: a directory (ends with `/`), or the literal stem of
    /// a glob whose only wildcard is a trailing `*` (`~/.ssh/id_*`). A stem also covers
    /// deeper paths the glob's `*` would not (it stops at `/`): stricter, never weaker.
    Prefix(String),
    /// Files by name: anywhere, directly in a directory, or anywhere below one.
    Name { dir: NameDir, name: NameMatch },
    /// A glob the kernel cannot match: an error for an enforced rule (`policy check` names
    /// it), a warning for a monitor rule, which then records nothing.
    Pattern(String),
}

/// Where a [`OpenTarget::Name`] applies. Directories are canonical and end with `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "dir")]
pub enum NameDir {
    /// `**/name`: in every directory.
    Anywhere,
    /// `dir/name`: files directly in `dir`.
    In(String),
    /// `dir/**/name`: files in `dir` or any directory below it.
    Under(String),
}

/// How a [`OpenTarget::Name`] matches the file's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum NameMatch {
    /// `.env`
    Is(String),
    /// `.env.*`
    StartsWith(String),
    /// `*.pem`
    EndsWith(String),
}

/// `InodeKey` (a kernel-shared type without serde) as `{ "dev": .., "ino": .. }`.
mod inode {
    use interceptor_common::InodeKey;
    use serde::{Serialize as _, Serializer};

    #[derive(serde::Serialize)]
    struct Key {
        dev: u64,
        ino: u64,
    }

    pub fn serialize<S: Serializer>(k: &InodeKey, s: S) -> Result<S::Ok, S::Error> {
        Key {
            dev: k.dev,
            ino: k.ino,
        }
        .serialize(s)
    }

    pub mod optional {
        use super::*;

        pub fn serialize<S: Serializer>(k: &Option<InodeKey>, s: S) -> Result<S::Ok, S::Error> {
            k.map(|k| Key {
                dev: k.dev,
                ino: k.ino,
            })
            .serialize(s)
        }
    }
}

/// Access bits of an open entry.
pub mod access_mask {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
}

/// One open entry for the kernel: what it matches, for which access, with which verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompiledOpenRule {
    pub target: OpenTarget,
    /// [`access_mask`] bits this entry applies to.
    pub access: u32,
    pub action: Action,
    pub rule_id: u32,
    pub decided_by: DecidedBy,
    /// The home `~` was expanded to, if the pattern used it.
    pub home: Option<String>,
    /// Shadow mode, as for exec entries: `rule_id` is a `monitor` rule that would have done
    /// this; the entry's action is `audit`, so the open goes on and is reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Action>,
}

/// A policy resolved against this host's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompiledPolicy {
    /// Entries for the kernel's `EXEC_RULES` map, one per binary.
    pub exec: Vec<CompiledExecRule>,
    /// When set, execs without an entry must be judged in userspace too.
    pub exec_fallback: Option<ExecFallback>,
    /// Entries for the kernel's open maps (OPEN_INODES, OPEN_PATHS, OPEN_DIRS, OPEN_NAMES, OPEN_SUFFIXES).
    pub open: Vec<CompiledOpenRule>,
    /// The verdict for an agent open no entry matches (`[defaults] open`).
    pub open_default: Action,
    /// (rule name, why) for rules none of whose binaries exist on this host.
    pub unresolved: Vec<(String, String)>,
    /// (rule name, script, interpreter) for `ask`/`deny` rules naming a script: every exec
    /// of the interpreter is held and the daemon judges the script it runs.
    pub interpreted: Vec<(String, String, String)>,
    /// `allow`/`audit` rules the kernel does not hold for: userspace labels their records.
    pub labelled_in_userspace: Vec<String>,
    /// `monitor` rules the kernel cannot pick out by inode (binary globs, basenames, no
    /// program): the daemon judges every reported exec of their agents, without holding,
    /// to record their would-be decisions.
    pub monitored_in_userspace: Vec<String>,
    pub policy_version: String,
}

impl CompiledPolicy {
    /// Who decides an exec of this binary; `None` when it has no entry.
    pub fn decided_by(&self, key: InodeKey) -> Option<DecidedBy> {
        self.exec
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.decided_by)
    }

    /// What an operator must know: everything the kernel does not decide by itself.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(f) = &self.exec_fallback {
            let who = f.agents.as_ref().map_or("every agent".to_string(), |a| {
                format!("agents {}", a.join(", "))
            });
            out.push(format!(
                "rules for {who} name programs by glob or basename, or the default is restrictive ({}): the kernel holds every agent exec no inode entry names, and the daemon judges it",
                f.because.join(", ")
            ));
        }
        for (rule, why) in &self.unresolved {
            out.push(format!("rule {rule} cannot match in the kernel: {why}"));
        }
        for (rule, script, interpreter) in &self.interpreted {
            out.push(format!(
                "rule {rule} names the script {script}: every agent exec of its interpreter {interpreter} is held, and the daemon judges the script each one runs"
            ));
        }
        let patterns: Vec<String> = self
            .open
            .iter()
            .filter_map(|o| match &o.target {
                OpenTarget::Pattern(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        if !patterns.is_empty() {
            out.push(format!(
                "open patterns the kernel does not match, so only the other rules and the default decide those opens: {} (a ~ pattern with no home to expand it to: give the agent home = or uid =; a dir/stem*/** allowing more than the default: name the directories)",
                patterns.join(", ")
            ));
        }
        out
    }
}

struct Candidate {
    rule_id: u32,
    /// The rule's action: what the kernel enforces for a kernel-decided rule, the
    /// strictest verdict userspace may reach for a userspace-decided one (whose entry holds
    /// as `ask`), the would-be action for a monitor rule.
    action: Action,
    decided_by: DecidedBy,
    path: String,
    monitor: bool,
}

pub(crate) fn compile(policy: &Policy) -> CompiledPolicy {
    let mut per_key: Vec<(InodeKey, Vec<Candidate>)> = Vec::new();
    let mut unresolved = Vec::new();
    let mut labelled = Vec::new();
    let mut monitored = Vec::new();
    let mut fallback_because = Vec::new();
    let mut fallback_agents: Option<BTreeSet<String>> = Some(BTreeSet::new());
    let mut fallback_all = false;
    let mut interpreted = Vec::new();

    for (index, rule) in policy.rules.iter().enumerate() {
        let rule_id = index as u32 + 1;
        let RuleMatcher::Exec(m) = &rule.matcher else {
            continue;
        };
        let spec = &m.spec;
        let kernel_only = spec.binary_only() && rule.agents.is_empty();
        let monitor = rule.is_monitor();
        if monitor && rule.action <= Action::Audit {
            // Never stricter than what runs anyway: nothing for the kernel to report.
            labelled.push(rule.name.clone());
            continue;
        }
        let decided_by = if kernel_only {
            DecidedBy::Kernel
        } else if rule.action >= Action::Ask {
            DecidedBy::Userspace
        } else {
            labelled.push(rule.name.clone());
            continue;
        };
        let beyond_inodes =
            !spec.binary_glob.is_empty() || !spec.basename.is_empty() || spec.binary.is_empty();
        if monitor && decided_by == DecidedBy::Userspace && beyond_inodes {
            monitored.push(rule.name.clone());
        } else if decided_by == DecidedBy::Userspace && beyond_inodes {
            fallback_because.push(rule.name.clone());
            if rule.agents.is_empty() {
                fallback_all = true;
            } else if let Some(set) = &mut fallback_agents {
                set.extend(rule.agents.iter().cloned());
            }
        }
        let mut resolved_any = false;
        let mut missing = Vec::new();
        for path in &spec.binary {
            match std::fs::metadata(path) {
                Ok(meta) => {
                    resolved_any = true;
                    let key = InodeKey {
                        dev: kernel_dev(meta.dev()),
                        ino: meta.ino(),
                    };
                    let candidate = Candidate {
                        rule_id,
                        action: rule.action,
                        decided_by,
                        path: path.clone(),
                        monitor,
                    };
                    let mut add = |key: InodeKey, candidate: Candidate| match per_key
                        .iter_mut()
                        .find(|(k, _)| *k == key)
                    {
                        Some((_, list)) => list.push(candidate),
                        None => per_key.push((key, vec![candidate])),
                    };
                    add(key, candidate);
                    // The kernel sees a script's interpreter, not the script, when the new
                    // program is about to run (and only the lsm backend sees the script at
                    // all, to refuse it): the interpreter's execs are held, and the daemon
                    // judges the script named in each.
                    if rule.action >= Action::Ask
                        && let Some((interpreter, ikey)) = interpreter_of(path)
                    {
                        interpreted.push((rule.name.clone(), path.clone(), interpreter.clone()));
                        add(
                            ikey,
                            Candidate {
                                rule_id,
                                action: rule.action,
                                decided_by: DecidedBy::Userspace,
                                path: interpreter,
                                monitor,
                            },
                        );
                    }
                }
                Err(e) => missing.push(format!("{path}: {e}")),
            }
        }
        if !spec.binary.is_empty() && !resolved_any {
            unresolved.push((rule.name.clone(), missing.join("; ")));
        }
    }
    if policy.defaults.exec >= Action::Ask {
        fallback_all = true;
        fallback_because.push(format!("[defaults] exec = \"{}\"", policy.defaults.exec));
    }
    let exec_fallback = (!fallback_because.is_empty()).then(|| ExecFallback {
        agents: if fallback_all {
            None
        } else {
            fallback_agents.map(|s| s.into_iter().collect())
        },
        because: fallback_because,
    });

    let exec = per_key
        .into_iter()
        .filter_map(|(key, candidates)| merge(key, &candidates, exec_fallback.is_some()))
        .collect();

    CompiledPolicy {
        exec,
        exec_fallback,
        open: compile_open(policy),
        open_default: policy.defaults.open,
        unresolved,
        interpreted,
        labelled_in_userspace: labelled,
        monitored_in_userspace: monitored,
        policy_version: policy.version().to_string(),
    }
}

/// The interpreter of a script (its `#!` line), resolved, with its identity; `None` for a
/// file that is not a script or whose interpreter does not exist.
fn interpreter_of(path: &str) -> Option<(String, InodeKey)> {
    use std::io::Read as _;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let interpreter = std::str::from_utf8(line).ok()?.split_whitespace().next()?;
    let resolved = std::fs::canonicalize(interpreter).ok()?;
    let meta = std::fs::metadata(&resolved).ok()?;
    Some((
        resolved.display().to_string(),
        InodeKey {
            dev: kernel_dev(meta.dev()),
            ino: meta.ino(),
        },
    ))
}

/// One entry per binary, or none when only monitor rules name it under a fallback (the
/// fallback already sends it to userspace).
fn merge(key: InodeKey, candidates: &[Candidate], fallback: bool) -> Option<CompiledExecRule> {
    let (watched, enforced): (Vec<&Candidate>, Vec<&Candidate>) =
        candidates.iter().partition(|c| c.monitor);
    let enforced = (!enforced.is_empty()).then(|| merge_enforced(key, &enforced, fallback));
    let Some(m) = strictest(watched.iter().copied(), |_| true) else {
        return enforced;
    };
    match enforced {
        // A held exec is judged in userspace with the whole policy, shadow included, and
        // an enforced verdict at least as strict as the monitor rule's says it all.
        Some(e) if e.decided_by == DecidedBy::Userspace || e.action >= m.action => Some(e),
        // The kernel would hold for a human but the monitor rule would deny: still hold,
        // and let userspace judge first so the would-be deny is seen.
        Some(e) if e.action == Action::Ask => Some(CompiledExecRule {
            decided_by: DecidedBy::Userspace,
            ..e
        }),
        _ if fallback => None,
        // Nothing stricter than audit is enforced here: run it, and report it under the
        // monitor rule.
        _ => Some(CompiledExecRule {
            key,
            path: m.path.clone(),
            action: Action::Audit,
            rule_id: m.rule_id,
            decided_by: DecidedBy::Kernel,
            shadow: Some(m.action),
        }),
    }
}

/// The most restrictive candidate passing `keep`; among equals, the first.
fn strictest<'a>(
    candidates: impl Iterator<Item = &'a Candidate>,
    keep: impl Fn(&Candidate) -> bool,
) -> Option<&'a Candidate> {
    candidates
        .filter(|c| keep(c))
        .fold(None::<&Candidate>, |best, c| match best {
            Some(b) if b.action >= c.action => Some(b),
            _ => Some(c),
        })
}

/// The entry of the enforced rules. The kernel's own verdict stands when it is `deny`, or
/// when no userspace rule could make it stricter; otherwise the kernel holds and userspace
/// decides.
fn merge_enforced(key: InodeKey, candidates: &[&Candidate], fallback: bool) -> CompiledExecRule {
    let kernel = strictest(candidates.iter().copied(), |c| {
        c.decided_by == DecidedBy::Kernel
    });
    let user = strictest(candidates.iter().copied(), |c| {
        c.decided_by == DecidedBy::Userspace
    });
    let kernel_action = kernel.map_or(Action::Allow, |k| k.action);
    let entry = |c: &Candidate, action, decided_by| CompiledExecRule {
        key,
        path: c.path.clone(),
        action,
        rule_id: c.rule_id,
        decided_by,
        shadow: None,
    };
    match (kernel, user) {
        (Some(k), _) if k.action == Action::Deny => entry(k, Action::Deny, DecidedBy::Kernel),
        (_, Some(u)) if u.action > kernel_action || fallback => {
            entry(u, Action::Ask, DecidedBy::Userspace)
        }
        (Some(k), _) if fallback => entry(k, Action::Ask, DecidedBy::Userspace),
        (Some(k), _) => entry(k, k.action, DecidedBy::Kernel),
        (None, Some(u)) => entry(u, Action::Ask, DecidedBy::Userspace),
        (None, None) => unreachable!("an entry has at least one candidate"),
    }
}

/// Homes `~` stands for: the agents' homes, and for rules that apply to every agent also
/// the home of every login account (uid 0 and uids from 1000), since any of them may
/// launch an agent.
fn homes_for(policy: &Policy, agents: &[String]) -> Vec<String> {
    let mut homes = BTreeSet::new();
    let declared = policy
        .agents
        .iter()
        .filter(|a| agents.is_empty() || agents.contains(&a.name));
    for a in declared {
        if let Some(h) = a
            .home
            .clone()
            .or_else(|| a.uids.first().and_then(|u| super::matcher::passwd_home(*u)))
        {
            homes.insert(h);
        }
    }
    if agents.is_empty()
        && let Ok(passwd) = std::fs::read_to_string("/etc/passwd")
    {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 6
                && let Ok(uid) = f[2].parse::<u32>()
                && (uid == 0 || (1000..65534).contains(&uid))
                && f[5].starts_with('/')
                && f[5] != "/"
            {
                homes.insert(f[5].to_string());
            }
        }
    }
    homes.into_iter().collect()
}

fn is_literal(s: &str) -> bool {
    !s.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// Everything below the directories whose names start with a stem (`~/.*/**`) compiles to
/// the stem's prefix, which adds the files directly named so: stricter than the rule, and
/// so only allowed (by the schema) for a rule at least as strict as `[defaults] open`.
pub(crate) fn widened_stem(pattern: &str) -> Option<&str> {
    pattern
        .strip_suffix("*/**")
        .filter(|stem| is_literal(stem) && !stem.ends_with('/'))
}

/// Whether the kernel can match a path pattern of an open rule (`~` stands for a home).
pub(crate) fn kernel_matchable(pattern: &str) -> bool {
    let expanded = match pattern.strip_prefix('~') {
        Some(rest) => format!("/home/agent{rest}"),
        None => pattern.to_string(),
    };
    !matches!(open_target(&expanded), OpenTarget::Pattern(_))
}

fn open_target(pattern: &str) -> OpenTarget {
    if is_literal(pattern) {
        let inode = std::fs::metadata(pattern).ok().map(|m| InodeKey {
            dev: kernel_dev(m.dev()),
            ino: m.ino(),
        });
        return OpenTarget::Exact {
            path: pattern.to_string(),
            inode,
        };
    }
    if let Some(dir) = pattern.strip_suffix("/**")
        && is_literal(dir)
    {
        return OpenTarget::Prefix(format!("{dir}/"));
    }
    if let Some(stem) = widened_stem(pattern) {
        return OpenTarget::Prefix(stem.to_string());
    }
    name_target(pattern).unwrap_or_else(|| OpenTarget::Pattern(pattern.to_string()))
}

/// A glob whose last component is a literal name, a literal name prefix (`id_*`) or a
/// literal name suffix (`*.pem`), in `**` (any directory), a literal directory or a literal
/// directory's `/**`: the kernel matches these by name within a directory scope.
fn name_target(pattern: &str) -> Option<OpenTarget> {
    let (dir, name) = pattern.rsplit_once('/')?;
    let canonical = |d: &str| {
        is_literal(d)
            && (d.is_empty() || d.starts_with('/'))
            && !d.contains("//")
            && !d
                .split('/')
                .skip(1)
                .any(|c| c == "." || c == ".." || c.is_empty())
    };
    let dir = if dir == "**" {
        NameDir::Anywhere
    } else if let Some(under) = dir.strip_suffix("/**").filter(|d| canonical(d)) {
        NameDir::Under(format!("{under}/"))
    } else if canonical(dir) {
        NameDir::In(format!("{dir}/"))
    } else {
        return None;
    };
    if name == "*" {
        return Some(OpenTarget::Prefix(match dir {
            NameDir::Anywhere => "/".into(),
            NameDir::In(d) | NameDir::Under(d) => d,
        }));
    }
    let literal = |n: &str| !n.is_empty() && is_literal(n) && n.len() <= RULE_NAME_MAX;
    let name = if literal(name) {
        NameMatch::Is(name.to_string())
    } else if let Some(end) = name.strip_prefix('*').filter(|n| literal(n)) {
        NameMatch::EndsWith(end.to_string())
    } else if let Some(start) = name.strip_suffix('*').filter(|n| literal(n)) {
        NameMatch::StartsWith(start.to_string())
    } else {
        return None;
    };
    Some(OpenTarget::Name { dir, name })
}

fn compile_open(policy: &Policy) -> Vec<CompiledOpenRule> {
    let mut out = Vec::new();
    for (index, rule) in policy.rules.iter().enumerate() {
        if rule.operation != Operation::Open {
            continue;
        }
        let RuleMatcher::Open(m) = &rule.matcher else {
            continue;
        };
        let monitor = rule.is_monitor();
        if monitor && rule.action == Action::Allow {
            // Never stricter than anything: a monitor allow rule has nothing to report.
            continue;
        }
        let access = match m.access {
            Access::Read => access_mask::READ,
            Access::Write => access_mask::WRITE,
            Access::Any => access_mask::READ | access_mask::WRITE,
        };
        let scoped = !rule.agents.is_empty();
        let mut push = |target: OpenTarget, home: Option<String>| {
            let decided_by = if scoped && !monitor {
                DecidedBy::Userspace
            } else {
                DecidedBy::Kernel
            };
            out.push(CompiledOpenRule {
                action: if monitor {
                    // Reported for every agent; the daemon judges who it applies to.
                    Action::Audit
                } else if decided_by == DecidedBy::Userspace {
                    rule.action.max(Action::Ask)
                } else {
                    rule.action
                },
                target,
                access,
                rule_id: index as u32 + 1,
                decided_by,
                home,
                shadow: (monitor && rule.action >= Action::Ask).then_some(rule.action),
            });
        };
        for pattern in &m.paths {
            let Some(rest) = pattern.strip_prefix('~') else {
                push(open_target(pattern), None);
                continue;
            };
            let mut homes = homes_for(policy, &rule.agents);
            if homes.is_empty() {
                // The rule's agents have no known home: every home on the host (stricter).
                homes = homes_for(policy, &[]);
            }
            if homes.is_empty() {
                push(OpenTarget::Pattern(pattern.clone()), None);
            }
            for home in homes {
                let expanded = format!("{}{rest}", home.trim_end_matches('/'));
                push(open_target(&expanded), Some(home));
            }
        }
    }
    let monitor_entries: Vec<bool> = out
        .iter()
        .map(|o| policy.rule(o.rule_id).is_some_and(|r| r.is_monitor()))
        .collect();
    let covered: Vec<bool> =
        out.iter()
            .zip(&monitor_entries)
            .map(|(o, &monitor)| {
                monitor
                    && out.iter().zip(&monitor_entries).any(|(e, &m)| {
                        !m && e.action > Action::Audit && covers(&e.target, &o.target)
                    })
            })
            .collect();
    out.into_iter()
        .zip(covered)
        .filter_map(|(o, covered)| (!covered).then_some(o))
        .collect()
}

/// Whether the kernel, finding `inner` (the longest match wins in its path trie, whatever
/// the access mode), would no longer see `outer` for some path: then a monitor `audit`
/// entry at `inner` would hide a stricter enforced entry at `outer`, so it is left out.
fn covers(outer: &OpenTarget, inner: &OpenTarget) -> bool {
    let inner = match inner {
        OpenTarget::Exact { path, .. } | OpenTarget::Prefix(path) => path,
        OpenTarget::Name { .. } | OpenTarget::Pattern(_) => return false,
    };
    match outer {
        OpenTarget::Exact { path, .. } => path == inner,
        OpenTarget::Prefix(prefix) => inner.starts_with(prefix.as_str()),
        OpenTarget::Name { .. } | OpenTarget::Pattern(_) => false,
    }
}
