//! The policy file as written: serde types that remember where each value is, decoded
//! strictly (an unknown field, section or value is an error), then validated into a
//! [`Policy`]. Every error names file:line:col.

use std::{collections::BTreeMap, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{self, IntoDeserializer as _, SeqAccess, Visitor},
};
use toml::Spanned;

use super::{
    Access, Action, Agent, Defaults, Escalation, GrantLimits, GrantScope, Mode, Operation, Policy,
    PolicyError, Rule, Severity, cases, compile, content_hash, line_col, matcher, parse_duration,
};

/// The top level of a policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    version: Spanned<u32>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    defaults: Option<RawDefaults>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default, rename = "agent")]
    agents: Vec<Spanned<RawAgent>>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default, rename = "test")]
    tests: Vec<Spanned<RawTest>>,
}

/// `[defaults]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    exec: Option<Action>,
    open: Option<Action>,
    timeout: Option<Spanned<String>>,
    on_timeout: Option<Spanned<Action>>,
    reviewers: Option<Spanned<Vec<String>>>,
}

/// `[[agent]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    name: Spanned<String>,
    uid: Option<OneOrMany<u32>>,
    cgroup: Option<Spanned<OneOrMany<String>>>,
    launched_name: Option<Spanned<OneOrMany<String>>>,
    home: Option<Spanned<String>>,
}

/// `[[rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    name: Spanned<String>,
    description: Option<String>,
    operation: Spanned<Operation>,
    agents: Option<Spanned<OneOrMany<String>>>,
    // exec matchers
    binary: Option<Spanned<OneOrMany<String>>>,
    binary_glob: Option<Spanned<OneOrMany<String>>>,
    basename: Option<Spanned<OneOrMany<String>>>,
    argv_glob: Option<Spanned<OneOrMany<String>>>,
    argv_regex: Option<Spanned<OneOrMany<String>>>,
    argv_not_regex: Option<Spanned<OneOrMany<String>>>,
    any_arg: Option<Spanned<OneOrMany<String>>>,
    arg: Option<Vec<Spanned<RawArg>>>,
    cwd: Option<Spanned<OneOrMany<String>>>,
    parent: Option<Spanned<OneOrMany<String>>>,
    env: Option<Spanned<OneOrMany<String>>>,
    // open matchers
    path: Option<Spanned<OneOrMany<String>>>,
    access: Option<Spanned<Access>>,
    // outcome
    action: Spanned<Action>,
    mode: Option<Mode>,
    reviewers: Option<Spanned<OneOrMany<String>>>,
    min_approvals: Option<Spanned<u32>>,
    escalate_after: Option<Spanned<String>>,
    escalate_to: Option<Spanned<OneOrMany<String>>>,
    timeout: Option<Spanned<String>>,
    on_timeout: Option<Spanned<Action>>,
    grant: Option<RawGrant>,
    reason: Option<String>,
    severity: Option<Severity>,
    controls: Option<Vec<Spanned<String>>>,
}

/// One `[[rule.arg]]`: a glob or regex for the argument at `index` (0 is argv[0]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawArg {
    index: usize,
    glob: Option<String>,
    regex: Option<String>,
}

/// `grant = { ... }` of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrant {
    max_ttl: Option<Spanned<String>>,
    max_uses: Option<u32>,
    scope: Option<GrantScope>,
}

/// `[[test]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTest {
    name: Spanned<String>,
    agent: Option<Spanned<String>>,
    uid: Option<u32>,
    exec: Option<Spanned<Vec<String>>>,
    binary: Option<Spanned<String>>,
    cwd: Option<String>,
    parent: Option<String>,
    env: Option<Vec<String>>,
    open: Option<Spanned<String>>,
    access: Option<Access>,
    expect: Action,
    expect_shadow: Option<Spanned<Action>>,
    expect_rule: Option<Spanned<String>>,
    expect_matched: Option<Spanned<Vec<String>>>,
}

/// A value or a list of values (`binary = "/usr/bin/x"` or `binary = ["/a", "/b"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(|x| OneOrMany(vec![x]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(|x| OneOrMany(vec![x]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

/// Decodes and validates a policy file.
pub(crate) fn decode(text: &str, origin: &str) -> Result<Policy, PolicyError> {
    let at = |offset: usize, message: String| {
        let (line, column) = line_col(text, offset);
        PolicyError::Parse {
            path: origin.into(),
            line,
            column,
            message,
        }
    };
    let raw: RawPolicy = toml::from_str(text).map_err(|e| {
        at(
            e.span().map_or(0, |span| span.start),
            e.message().to_string(),
        )
    })?;
    let v = Validator { at: &at };
    v.policy(raw, text, origin)
}

struct Validator<'a> {
    at: &'a dyn Fn(usize, String) -> PolicyError,
}

type Res<T> = Result<T, PolicyError>;

impl Validator<'_> {
    fn err<T>(&self, offset: usize, message: impl Into<String>) -> Res<T> {
        Err((self.at)(offset, message.into()))
    }

    fn policy(&self, raw: RawPolicy, text: &str, origin: &str) -> Res<Policy> {
        if *raw.version.get_ref() != 1 {
            return self.err(
                raw.version.span().start,
                format!(
                    "unsupported version {} (this build reads version 1)",
                    raw.version.get_ref()
                ),
            );
        }
        for (group, members) in &raw.groups {
            if members.is_empty() {
                return self.err(0, format!("reviewer group {group:?} has no members"));
            }
        }
        let mode = raw.mode.unwrap_or_default();
        let mut defaults = Defaults::default();
        if let Some(d) = raw.defaults {
            defaults.exec = d.exec.unwrap_or(defaults.exec);
            defaults.open = d.open.unwrap_or(defaults.open);
            if let Some(t) = d.timeout {
                defaults.timeout = self.duration(&t)?;
            }
            if let Some(a) = d.on_timeout {
                defaults.on_timeout = self.on_timeout(&a)?;
            }
            if let Some(r) = d.reviewers {
                self.reviewers(&raw.groups, r.span().start, r.get_ref())?;
                defaults.reviewers = r.into_inner();
            }
        }

        let mut agents: Vec<Agent> = Vec::new();
        for spanned in raw.agents {
            let a = spanned.into_inner();
            let name = self.name(&a.name, "agent")?;
            if agents.iter().any(|x| x.name == name) {
                return self.err(
                    a.name.span().start,
                    format!("agent {name:?} is declared twice"),
                );
            }
            let cgroups = a.cgroup.map(|c| self.globs(&c, true)).transpose()?;
            let launched_names = a.launched_name.map(|c| self.globs(&c, false)).transpose()?;
            let home = match a.home {
                Some(h) if !h.get_ref().starts_with('/') => {
                    return self.err(
                        h.span().start,
                        format!("agent home {:?} is not an absolute path", h.get_ref()),
                    );
                }
                h => h.map(Spanned::into_inner),
            };
            agents.push(Agent {
                name,
                uids: a.uid.map(|u| u.0).unwrap_or_default(),
                cgroups: cgroups.unwrap_or_default(),
                launched_names: launched_names.unwrap_or_default(),
                home,
            });
        }

        let mut rules: Vec<Rule> = Vec::new();
        for spanned in raw.rules {
            let start = spanned.span().start;
            let r = spanned.into_inner();
            let name = self.name(&r.name, "rule")?;
            if rules.iter().any(|x| x.name == name) {
                return self.err(
                    r.name.span().start,
                    format!("rule name {name:?} is used twice"),
                );
            }
            let own_mode = r.mode;
            let mut rule = self.rule(r, name, start, text, &agents, &raw.groups)?;
            if let matcher::RuleMatcher::Open(m) = &rule.matcher
                && rule.action < defaults.open
                && let Some(p) = m.paths.iter().find(|p| compile::widened_stem(p).is_some())
            {
                return self.err(
                    start,
                    format!(
                        "open rule {:?}: the kernel matches {p:?} as every path starting with {:?}, which would give the files named so the rule's {} instead of the stricter [defaults] open = \"{}\"; name the directories instead",
                        rule.name,
                        compile::widened_stem(p).unwrap_or_default(),
                        rule.action,
                        defaults.open
                    ),
                );
            }
            rule.mode = own_mode.unwrap_or(mode);
            rules.push(rule);
        }

        let mut tests = Vec::new();
        for spanned in raw.tests {
            let t = spanned.into_inner();
            tests.push(self.test(t, &agents, &rules, &tests)?);
        }

        let canonical = text.as_bytes().to_vec();
        Ok(Policy {
            format: 1,
            mode,
            defaults,
            agents,
            groups: raw.groups,
            rules,
            tests,
            origin: origin.into(),
            version: content_hash(&canonical),
            canonical,
        })
    }

    fn name(&self, name: &Spanned<String>, what: &str) -> Res<String> {
        let n = name.get_ref().trim();
        if n.is_empty() {
            return self.err(name.span().start, format!("a {what} has an empty name"));
        }
        Ok(n.to_string())
    }

    fn duration(&self, text: &Spanned<String>) -> Res<std::time::Duration> {
        parse_duration(text.get_ref()).or_else(|e| self.err(text.span().start, e))
    }

    fn on_timeout(&self, action: &Spanned<Action>) -> Res<Action> {
        match action.get_ref() {
            Action::Ask => self.err(
                action.span().start,
                "on_timeout cannot be \"ask\": it is what happens when nobody answered",
            ),
            a => Ok(*a),
        }
    }

    fn reviewers(
        &self,
        groups: &BTreeMap<String, Vec<String>>,
        offset: usize,
        names: &[String],
    ) -> Res<()> {
        for name in names {
            if let Some(group) = name.strip_prefix('@')
                && !groups.contains_key(group)
            {
                return self.err(
                    offset,
                    format!("reviewer group {name:?} is not defined in [groups]"),
                );
            }
            if name.trim().is_empty() {
                return self.err(offset, "a reviewer name is empty");
            }
        }
        Ok(())
    }

    /// Checks glob syntax; `path_like` globs must be absolute, start with `~/` or `**`.
    fn globs(&self, globs: &Spanned<OneOrMany<String>>, path_like: bool) -> Res<Vec<String>> {
        let offset = globs.span().start;
        let list = &globs.get_ref().0;
        if list.is_empty() {
            return self.err(offset, "the list is empty: give at least one pattern");
        }
        for g in list {
            if g.starts_with('~') && !(g == "~" || g.starts_with("~/")) {
                return self.err(
                    offset,
                    format!(
                        "pattern {g:?}: only ~ and ~/ are expanded (to the agent's home), not ~user"
                    ),
                );
            }
            if path_like
                && !(g.starts_with('/') || g.starts_with("~/") || g == "~" || g.starts_with("**"))
            {
                return self.err(
                    offset,
                    format!("path pattern {g:?} must start with /, ~/ or **"),
                );
            }
            if let Err(e) = globset::Glob::new(g) {
                return self.err(offset, format!("invalid glob {g:?}: {}", e.kind()));
            }
        }
        Ok(list.clone())
    }

    fn regexes(&self, list: &Spanned<OneOrMany<String>>) -> Res<Vec<String>> {
        let offset = list.span().start;
        if list.get_ref().0.is_empty() {
            return self.err(offset, "the list is empty: give at least one pattern");
        }
        for r in &list.get_ref().0 {
            if let Err(e) = regex::Regex::new(r) {
                return self.err(offset, format!("invalid regex {r:?}: {e}"));
            }
        }
        Ok(list.get_ref().0.clone())
    }

    fn rule(
        &self,
        r: RawRule,
        name: String,
        start: usize,
        text: &str,
        agents: &[Agent],
        groups: &BTreeMap<String, Vec<String>>,
    ) -> Res<Rule> {
        let operation = *r.operation.get_ref();
        let rule_agents = match &r.agents {
            Some(list) => {
                for a in &list.get_ref().0 {
                    if !agents.iter().any(|x| &x.name == a) {
                        return self.err(
                            list.span().start,
                            format!("rule {name:?} names agent {a:?}, which no [[agent]] declares"),
                        );
                    }
                }
                list.get_ref().0.clone()
            }
            None => Vec::new(),
        };

        // Matchers belong to one operation; a matcher of the other kind is a mistake.
        let exec_fields: [(&str, Option<usize>); 11] = [
            ("binary", r.binary.as_ref().map(|s| s.span().start)),
            (
                "binary_glob",
                r.binary_glob.as_ref().map(|s| s.span().start),
            ),
            ("basename", r.basename.as_ref().map(|s| s.span().start)),
            ("argv_glob", r.argv_glob.as_ref().map(|s| s.span().start)),
            ("argv_regex", r.argv_regex.as_ref().map(|s| s.span().start)),
            (
                "argv_not_regex",
                r.argv_not_regex.as_ref().map(|s| s.span().start),
            ),
            ("any_arg", r.any_arg.as_ref().map(|s| s.span().start)),
            (
                "arg",
                r.arg
                    .as_ref()
                    .and_then(|a| a.first())
                    .map(|s| s.span().start),
            ),
            ("cwd", r.cwd.as_ref().map(|s| s.span().start)),
            ("parent", r.parent.as_ref().map(|s| s.span().start)),
            ("env", r.env.as_ref().map(|s| s.span().start)),
        ];
        let open_fields: [(&str, Option<usize>); 2] = [
            ("path", r.path.as_ref().map(|s| s.span().start)),
            ("access", r.access.as_ref().map(|s| s.span().start)),
        ];
        let (wrong, kind) = match operation {
            Operation::Exec => (&open_fields[..], "exec"),
            Operation::Open => (&exec_fields[..], "open"),
        };
        if let Some((field, Some(offset))) = wrong.iter().find(|(_, o)| o.is_some()) {
            return self.err(
                *offset,
                format!("rule {name:?}: `{field}` does not apply to an {kind} rule"),
            );
        }

        let matcher = match operation {
            Operation::Exec => {
                let binary = match &r.binary {
                    Some(list) => {
                        if list.get_ref().0.is_empty() {
                            return self.err(
                                list.span().start,
                                "the list is empty: give at least one path",
                            );
                        }
                        for b in &list.get_ref().0 {
                            if !b.starts_with('/') {
                                return self.err(
                                    list.span().start,
                                    format!(
                                        "rule {name:?}: binary {b:?} is not an absolute path (use basename = {b:?} to match by name)"
                                    ),
                                );
                            }
                        }
                        list.get_ref().0.clone()
                    }
                    None => Vec::new(),
                };
                let binary_glob = r
                    .binary_glob
                    .as_ref()
                    .map(|g| self.globs(g, true))
                    .transpose()?;
                if let Some(bg) = &binary_glob
                    && let Some(g) = bg.iter().find(|g| g.starts_with('~'))
                {
                    return self.err(
                        r.binary_glob.as_ref().map_or(0, |s| s.span().start),
                        format!("binary_glob {g:?}: ~ is only expanded in cwd and path"),
                    );
                }
                let basename = match &r.basename {
                    Some(list) => {
                        if let Some(b) = list
                            .get_ref()
                            .0
                            .iter()
                            .find(|b| b.contains('/') || b.is_empty())
                        {
                            return self.err(
                                list.span().start,
                                format!("basename {b:?} must be a file name without /"),
                            );
                        }
                        list.get_ref().0.clone()
                    }
                    None => Vec::new(),
                };
                let mut args = Vec::new();
                for a in r.arg.iter().flatten() {
                    let offset = a.span().start;
                    let a = a.get_ref();
                    match (&a.glob, &a.regex) {
                        (Some(g), None) => {
                            if let Err(e) = globset::Glob::new(g) {
                                return self
                                    .err(offset, format!("invalid glob {g:?}: {}", e.kind()));
                            }
                            args.push((a.index, matcher::ArgPattern::Glob(g.clone())));
                        }
                        (None, Some(re)) => {
                            if let Err(e) = regex::Regex::new(re) {
                                return self.err(offset, format!("invalid regex {re:?}: {e}"));
                            }
                            args.push((a.index, matcher::ArgPattern::Regex(re.clone())));
                        }
                        _ => {
                            return self.err(
                                offset,
                                format!("rule {name:?}: an arg needs exactly one of glob or regex"),
                            );
                        }
                    }
                }
                let env = match &r.env {
                    Some(list) => {
                        if let Some(k) = list
                            .get_ref()
                            .0
                            .iter()
                            .find(|k| k.is_empty() || k.contains('='))
                        {
                            return self.err(
                                list.span().start,
                                format!("env {k:?} must be a variable name (without =)"),
                            );
                        }
                        list.get_ref().0.clone()
                    }
                    None => Vec::new(),
                };
                let spec = matcher::ExecSpec {
                    binary,
                    binary_glob: binary_glob.unwrap_or_default(),
                    basename,
                    argv_glob: r
                        .argv_glob
                        .as_ref()
                        .map(|g| self.globs(g, false))
                        .transpose()?
                        .unwrap_or_default(),
                    argv_regex: r
                        .argv_regex
                        .as_ref()
                        .map(|g| self.regexes(g))
                        .transpose()?
                        .unwrap_or_default(),
                    argv_not_regex: r
                        .argv_not_regex
                        .as_ref()
                        .map(|g| self.regexes(g))
                        .transpose()?
                        .unwrap_or_default(),
                    any_arg: r
                        .any_arg
                        .as_ref()
                        .map(|g| self.globs(g, false))
                        .transpose()?
                        .unwrap_or_default(),
                    args,
                    cwd: r
                        .cwd
                        .as_ref()
                        .map(|g| self.globs(g, true))
                        .transpose()?
                        .unwrap_or_default(),
                    parent: r
                        .parent
                        .as_ref()
                        .map(|g| self.globs(g, true))
                        .transpose()?
                        .unwrap_or_default(),
                    env,
                };
                if spec.is_empty() && rule_agents.is_empty() {
                    return self.err(
                        start,
                        format!(
                            "rule {name:?} has no matcher, so it would match every exec; set [defaults] exec instead, or limit it with agents = [...]"
                        ),
                    );
                }
                matcher::RuleMatcher::exec(spec)
            }
            Operation::Open => {
                let paths = match &r.path {
                    Some(p) => {
                        let paths = self.globs(p, true)?;
                        if let Some(g) = paths.iter().find(|g| !compile::kernel_matchable(g)) {
                            return self.err(
                                p.span().start,
                                format!(
                                    "open rule {name:?}: the kernel cannot match path {g:?}; use an exact path, a directory (/dir/**), a name stem (/dir/id_*), or a literal name, name prefix (.env.*) or name suffix (*.pem) in a directory (/dir/NAME), below one (/dir/**/NAME) or anywhere (**/NAME)"
                                ),
                            );
                        }
                        paths
                    }
                    None => {
                        return self.err(start, format!("open rule {name:?} needs path = [...]"));
                    }
                };
                matcher::RuleMatcher::open(paths, r.access.map_or(Access::Any, |a| *a.get_ref()))
            }
        };

        let reviewers = match &r.reviewers {
            Some(list) => {
                self.reviewers(groups, list.span().start, &list.get_ref().0)?;
                list.get_ref().0.clone()
            }
            None => Vec::new(),
        };
        if !reviewers.is_empty() && *r.action.get_ref() != Action::Ask {
            let offset = r.reviewers.as_ref().map_or(start, |s| s.span().start);
            return self.err(
                offset,
                format!("rule {name:?}: reviewers only apply to action = \"ask\""),
            );
        }
        let min_approvals = match &r.min_approvals {
            None => 1,
            Some(n) if *r.action.get_ref() != Action::Ask => {
                return self.err(
                    n.span().start,
                    format!("rule {name:?}: min_approvals only applies to action = \"ask\""),
                );
            }
            Some(n) if !(1..=16).contains(n.get_ref()) => {
                return self.err(
                    n.span().start,
                    format!(
                        "rule {name:?}: min_approvals must be 1 to 16, not {}",
                        n.get_ref()
                    ),
                );
            }
            Some(n) => *n.get_ref(),
        };
        let timeout = r.timeout.as_ref().map(|t| self.duration(t)).transpose()?;
        let escalation = match (&r.escalate_after, &r.escalate_to) {
            (None, None) => None,
            (Some(after), Some(to)) => {
                if *r.action.get_ref() != Action::Ask {
                    return self.err(
                        after.span().start,
                        format!("rule {name:?}: escalate_after only applies to action = \"ask\""),
                    );
                }
                self.reviewers(groups, to.span().start, &to.get_ref().0)?;
                if to.get_ref().0.is_empty() {
                    return self.err(
                        to.span().start,
                        format!("rule {name:?}: escalate_to names nobody"),
                    );
                }
                let after_d = self.duration(after)?;
                if after_d.is_zero() {
                    return self.err(
                        after.span().start,
                        format!("rule {name:?}: escalate_after must be longer than 0s"),
                    );
                }
                if let Some(t) = timeout
                    && after_d >= t
                {
                    return self.err(
                        after.span().start,
                        format!(
                            "rule {name:?}: escalate_after ({}) must be shorter than the rule's timeout ({}), or the request expires first",
                            after.get_ref(),
                            r.timeout.as_ref().map_or(String::new(), |t| t.get_ref().clone())
                        ),
                    );
                }
                Some(Escalation {
                    after: after_d,
                    to: to.get_ref().0.clone(),
                })
            }
            (Some(after), None) => {
                return self.err(
                    after.span().start,
                    format!("rule {name:?}: escalate_after needs escalate_to (who is asked then)"),
                );
            }
            (None, Some(to)) => {
                return self.err(
                    to.span().start,
                    format!(
                        "rule {name:?}: escalate_to needs escalate_after (when they are asked)"
                    ),
                );
            }
        };
        let on_timeout = r
            .on_timeout
            .as_ref()
            .map(|a| self.on_timeout(a))
            .transpose()?;
        let grant = match r.grant {
            Some(g) => Some(GrantLimits {
                max_ttl: g.max_ttl.as_ref().map(|t| self.duration(t)).transpose()?,
                max_uses: g.max_uses,
                scope: g.scope.unwrap_or(GrantScope::Once),
            }),
            None => None,
        };
        let mut controls = Vec::new();
        for c in r.controls.iter().flatten() {
            if !valid_control(c.get_ref()) {
                return self.err(
                    c.span().start,
                    format!(
                        "control tag {:?} must look like FRAMEWORK:CONTROL, e.g. SOC2:CC6.1 or NIST-800-53:AC-6(9)",
                        c.get_ref()
                    ),
                );
            }
            controls.push(c.get_ref().clone());
        }
        Ok(Rule {
            name,
            description: r.description,
            operation,
            agents: rule_agents,
            action: *r.action.get_ref(),
            mode: Mode::Enforce, // the caller applies the policy's mode
            reviewers,
            min_approvals,
            escalation,
            timeout,
            on_timeout,
            grant,
            reason: r.reason,
            severity: r.severity,
            controls,
            line: line_col(text, start).0,
            matcher,
        })
    }

    fn test(
        &self,
        t: RawTest,
        agents: &[Agent],
        rules: &[Rule],
        earlier: &[cases::TestCase],
    ) -> Res<cases::TestCase> {
        let name = self.name(&t.name, "test")?;
        if earlier.iter().any(|x| x.name == name) {
            return self.err(
                t.name.span().start,
                format!("test name {name:?} is used twice"),
            );
        }
        if let Some(a) = &t.agent
            && !agents.iter().any(|x| &x.name == a.get_ref())
        {
            return self.err(
                a.span().start,
                format!(
                    "test {name:?} names agent {:?}, which no [[agent]] declares",
                    a.get_ref()
                ),
            );
        }
        for r in t.expect_rule.iter() {
            if !rules.iter().any(|x| &x.name == r.get_ref()) {
                return self.err(
                    r.span().start,
                    format!(
                        "test {name:?} expects rule {:?}, which does not exist",
                        r.get_ref()
                    ),
                );
            }
        }
        for list in t.expect_matched.iter() {
            if let Some(r) = list
                .get_ref()
                .iter()
                .find(|r| !rules.iter().any(|x| &x.name == *r))
            {
                return self.err(
                    list.span().start,
                    format!("test {name:?} expects rule {r:?}, which does not exist"),
                );
            }
        }
        let operation = match (&t.exec, &t.open) {
            (Some(argv), None) => {
                if argv.get_ref().is_empty() {
                    return self.err(
                        argv.span().start,
                        format!("test {name:?}: exec needs at least a command"),
                    );
                }
                if t.access.is_some() {
                    return self.err(
                        argv.span().start,
                        format!("test {name:?}: access only applies to open"),
                    );
                }
                let binary = match &t.binary {
                    Some(b) if !b.get_ref().starts_with('/') => {
                        return self.err(
                            b.span().start,
                            format!("test {name:?}: binary must be an absolute path"),
                        );
                    }
                    Some(b) => b.get_ref().clone(),
                    None => cases::test_binary(&argv.get_ref()[0]),
                };
                cases::TestOperation::Exec {
                    binary,
                    argv: argv.get_ref().clone(),
                    cwd: t.cwd,
                    parent: t.parent,
                    env: t.env.unwrap_or_default(),
                }
            }
            (None, Some(path)) => {
                let p = path.get_ref();
                if !(p.starts_with('/') || p.starts_with("~/")) {
                    return self.err(
                        path.span().start,
                        format!("test {name:?}: open must be an absolute path or start with ~/"),
                    );
                }
                if t.binary.is_some() || t.cwd.is_some() || t.parent.is_some() || t.env.is_some() {
                    return self.err(
                        path.span().start,
                        format!("test {name:?}: binary, cwd, parent and env only apply to exec"),
                    );
                }
                cases::TestOperation::Open {
                    path: p.clone(),
                    access: t.access.unwrap_or(Access::Read),
                }
            }
            _ => {
                return self.err(
                    t.name.span().start,
                    format!("test {name:?} needs exactly one of exec = [...] or open = \"...\""),
                );
            }
        };
        let expect_shadow = match t.expect_shadow {
            Some(a) if *a.get_ref() <= t.expect => {
                return self.err(
                    a.span().start,
                    format!(
                        "test {name:?}: expect_shadow = \"{}\" is not stricter than expect = \"{}\"; a shadow decision is only reported when a monitor rule is stricter than what is enforced",
                        a.get_ref(),
                        t.expect
                    ),
                );
            }
            a => a.map(Spanned::into_inner),
        };
        Ok(cases::TestCase {
            name,
            agent: t.agent.map(Spanned::into_inner),
            uid: t.uid,
            operation,
            expect: t.expect,
            expect_shadow,
            expect_rule: t.expect_rule.map(Spanned::into_inner),
            expect_matched: t.expect_matched.map(Spanned::into_inner),
        })
    }
}

/// `FRAMEWORK:CONTROL`, both parts non-empty and without spaces.
fn valid_control(tag: &str) -> bool {
    let Some((framework, control)) = tag.split_once(':') else {
        return false;
    };
    !framework.is_empty()
        && !control.is_empty()
        && framework
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !control.chars().any(char::is_whitespace)
}

/// The field names serde accepts in each section, read from the decoder itself (the
/// "unknown field" error lists them), so documentation can be checked against the schema.
pub fn schema_fields() -> Vec<(&'static str, Vec<String>)> {
    fn fields_of<T: for<'de> Deserialize<'de>>(wrap: &str) -> Vec<String> {
        let probe = format!("{wrap}\n__probe__ = 1\n");
        let err = match toml::from_str::<T>(&probe) {
            Ok(_) => panic!("the probe field was accepted"),
            Err(e) => e.message().to_string(),
        };
        let list = err
            .split_once("expected one of ")
            .or_else(|| err.split_once("expected "))
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("no field list in {err:?}"));
        list.split(", ")
            .map(|f| f.trim_matches('`').to_string())
            .collect()
    }
    vec![
        ("top level", fields_of::<RawPolicy>("version = 1")),
        ("[defaults]", fields_of::<RawDefaults>("")),
        ("[[agent]]", fields_of::<RawAgent>("name = \"a\"")),
        (
            "[[rule]]",
            fields_of::<RawRule>("name = \"r\"\noperation = \"exec\"\naction = \"allow\""),
        ),
        ("[[rule.arg]]", fields_of::<RawArg>("index = 1")),
        ("grant", fields_of::<RawGrant>("")),
        (
            "[[test]]",
            fields_of::<RawTest>("name = \"t\"\nexpect = \"allow\""),
        ),
    ]
}
