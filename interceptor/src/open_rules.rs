//! Open rules and their compilation into the kernel's open maps.
//!
//! A rule names files one of three ways:
//! - exactly (`/etc/shadow`): by the file's identity (device, inode) when it exists — so
//!   hardlinks and other names reach it — and by path in `OPEN_PATHS`, the trie key carrying
//!   the terminating NUL so `/etc/shadow` never matches `/etc/shadow.bak`;
//! - as a prefix (`/home/dev/.ssh/`, or a stem such as `/root/.ssh/id_`): every path that
//!   starts with it, in `OPEN_PATHS` without the NUL;
//! - by file name (`**/.env`, `/home/dev/.ssh/*.pem`, `/srv/**/.env.*`): an exact name or a
//!   name prefix in `OPEN_NAMES`, a name suffix reversed in `OPEN_SUFFIXES`, each keyed by a
//!   scope. Scope 0 is every directory; other scopes come from `OPEN_DIRS`, which maps the
//!   opened file's directory (`dir/` then NUL for "directly in", `dir/` alone for "anywhere
//!   below") to the id of the scope holding every name rule of every directory entry that
//!   covers it.
//!
//! The kernel takes one longest match per map, so every entry here already carries the
//! strictest verdict, per access class, of each shorter entry of its map that matches
//! wherever it does: a `/srv/public/**` audit entry beneath a `/srv/**` deny is a deny
//! for reads and writes alike. The kernel compares against d_path output, which is
//! canonical: rule paths must be too.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use interceptor_common::{
    InodeKey, NAME_KEY_MAX, OpenRule, RULE_NAME_MAX, RULE_PATH_MAX, Verdict, access,
};

use crate::policy::{
    Action, CompiledPolicy, NameDir, NameMatch, OpenTarget, Policy, access_mask, kernel_dev,
};

/// Open rule ids start here, above any policy rule index, so events name their rule.
pub const OPEN_RULE_ID_BASE: u32 = 1 << 20;

/// The rule that keeps agents out of the daemon's own files.
pub const DAEMON_FILES_RULE: &str = "builtin:daemon-files";

/// What an open rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenMatch {
    /// This absolute canonical path.
    Exact(String),
    /// Every path starting with this (a directory with its `/`, or a path stem).
    Prefix(String),
    /// Files by name, in a directory scope.
    Name { dir: NameDir, name: NameMatch },
}

/// One open rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRuleSpec {
    pub name: String,
    pub target: OpenMatch,
    pub action: Action,
    /// [`access`] bits the rule applies to.
    pub access: u32,
    pub reason: Option<String>,
}

impl OpenRuleSpec {
    /// A rule given on the daemon's command line (all access modes); a path ending with `/`
    /// is a directory prefix.
    pub fn from_flag(action: Action, path: &str) -> Self {
        let flag = match action {
            Action::Deny => "deny-open",
            Action::Ask => "hold-open",
            Action::Audit => "audit-open",
            Action::Allow => "allow-open",
        };
        Self {
            name: format!("cli:{flag}:{path}"),
            target: path_target(path),
            action,
            access: access::ALL,
            reason: Some(format!("given as --{flag} on the daemon's command line")),
        }
    }

    /// Agents may not open the daemon's configuration or policy, in any mode.
    pub fn daemon_files(paths: &[String]) -> Vec<Self> {
        paths
            .iter()
            .map(|path| Self {
                name: DAEMON_FILES_RULE.into(),
                target: path_target(path),
                action: Action::Deny,
                access: access::ALL,
                reason: Some("the daemon's own files: no agent reads or changes them".into()),
            })
            .collect()
    }
}

/// The policy's kernel-matchable open entries as open rules (named after their policy rule).
pub fn policy_rules(policy: &Policy, compiled: &CompiledPolicy) -> Vec<OpenRuleSpec> {
    compiled
        .open
        .iter()
        .filter_map(|entry| {
            let target = match &entry.target {
                OpenTarget::Exact { path, .. } => OpenMatch::Exact(path.clone()),
                OpenTarget::Prefix(path) => OpenMatch::Prefix(path.clone()),
                OpenTarget::Name { dir, name } => OpenMatch::Name {
                    dir: dir.clone(),
                    name: name.clone(),
                },
                OpenTarget::Pattern(_) => return None,
            };
            let mut bits = 0;
            if entry.access & access_mask::READ != 0 {
                bits |= access::READ;
            }
            if entry.access & access_mask::WRITE != 0 {
                bits |= access::WRITE | access::CREATE | access::TRUNCATE;
            }
            let rule = policy.rule(entry.rule_id);
            Some(OpenRuleSpec {
                name: rule.map_or_else(
                    || format!("policy rule {}", entry.rule_id),
                    |r| r.name.clone(),
                ),
                target,
                action: entry.action,
                access: bits,
                reason: rule.and_then(|r| r.reason.clone()),
            })
        })
        .collect()
}

/// A path ending with `/` is a directory prefix, any other an exact path.
fn path_target(path: &str) -> OpenMatch {
    if path.ends_with('/') {
        OpenMatch::Prefix(path.to_string())
    } else {
        OpenMatch::Exact(path.to_string())
    }
}

/// (prefix length in bits, key bytes, value): one LPM trie entry.
pub type TrieEntry<const N: usize, V> = (u32, [u8; N], V);

/// Rules resolved for the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledOpenRules {
    pub inodes: Vec<(InodeKey, OpenRule)>,
    pub paths: Vec<TrieEntry<RULE_PATH_MAX, OpenRule>>,
    /// Directory scopes: key to scope id.
    pub dirs: Vec<TrieEntry<RULE_PATH_MAX, u32>>,
    pub names: Vec<TrieEntry<NAME_KEY_MAX, OpenRule>>,
    pub suffixes: Vec<TrieEntry<NAME_KEY_MAX, OpenRule>>,
    /// `[defaults] open` for both access classes (rule 0).
    pub default: OpenRule,
}

/// The map value of a rule: its verdict in the access classes it names.
fn value_of(rule: &OpenRuleSpec, rule_id: u32) -> OpenRule {
    let verdict = Verdict::from(rule.action) as u32;
    let mut value = OpenRule::default();
    if rule.access & access::READ != 0 {
        (value.read_verdict, value.read_rule) = (verdict, rule_id);
    }
    if rule.access & (access::WRITE | access::CREATE | access::TRUNCATE) != 0 {
        (value.write_verdict, value.write_rule) = (verdict, rule_id);
    }
    value
}

fn canonical(path: &str) -> bool {
    path.starts_with('/') && !path.contains("//") && !path.split('/').any(|c| c == "." || c == "..")
}

/// Compiles rules; `rules[i]` gets id `OPEN_RULE_ID_BASE + i`; an open no rule names gets
/// `default`. Rejects what the kernel could never match (relative, not canonical or too
/// long paths and names) instead of dropping it.
pub fn compile(rules: &[OpenRuleSpec], default: Action) -> Result<CompiledOpenRules, String> {
    let default_verdict = Verdict::from(default) as u32;
    let mut out = CompiledOpenRules {
        inodes: Vec::new(),
        paths: Vec::new(),
        dirs: Vec::new(),
        names: Vec::new(),
        suffixes: Vec::new(),
        default: OpenRule {
            read_verdict: default_verdict,
            read_rule: 0,
            write_verdict: default_verdict,
            write_rule: 0,
        },
    };
    // Name rules by directory scope: (dir key bits, dir key) -> the rules naming it.
    let mut scoped: Vec<TrieEntry<RULE_PATH_MAX, Vec<usize>>> = Vec::new();
    let mut anywhere: Vec<usize> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let value = value_of(rule, OPEN_RULE_ID_BASE + index as u32);
        let too_long = |what: &str, max: usize| {
            format!(
                "open rule {}: {what} is longer than the kernel matches ({max} bytes)",
                rule.name
            )
        };
        let not_canonical = |path: &str| {
            format!(
                "open rule {}: {path:?} is not an absolute canonical path",
                rule.name
            )
        };
        match &rule.target {
            OpenMatch::Exact(path) | OpenMatch::Prefix(path) => {
                let prefix = matches!(rule.target, OpenMatch::Prefix(_));
                // A prefix's last component is a name stem (`/home/dev/.`), not a name.
                let checked = match path.rfind('/') {
                    Some(i) if prefix => &path[..=i],
                    _ => path.as_str(),
                };
                if !canonical(checked) {
                    return Err(not_canonical(path));
                }
                // Exact keys carry the NUL; both must fit the trie key.
                let key_len = if prefix { path.len() } else { path.len() + 1 };
                if key_len > RULE_PATH_MAX {
                    return Err(too_long(&format!("{path:?}"), RULE_PATH_MAX - 1));
                }
                merge(&mut out.paths, key_len, key(path.as_bytes()), value);
                let existing = (!prefix)
                    .then(|| std::fs::metadata(Path::new(path)).ok())
                    .flatten();
                if let Some(meta) = existing {
                    let identity = InodeKey {
                        dev: kernel_dev(meta.dev()),
                        ino: meta.ino(),
                    };
                    match out.inodes.iter_mut().find(|(k, _)| *k == identity) {
                        Some((_, existing)) => *existing = existing.stricter(value),
                        None => out.inodes.push((identity, value)),
                    }
                }
            }
            OpenMatch::Name { dir, name } => {
                let literal = match name {
                    NameMatch::Is(n) | NameMatch::StartsWith(n) | NameMatch::EndsWith(n) => n,
                };
                if literal.is_empty() || literal.contains('/') {
                    return Err(format!(
                        "open rule {}: {literal:?} is not a file name",
                        rule.name
                    ));
                }
                if literal.len() > RULE_NAME_MAX {
                    return Err(too_long(&format!("the name {literal:?}"), RULE_NAME_MAX));
                }
                let (dir, below) = match dir {
                    NameDir::Anywhere => {
                        anywhere.push(index);
                        continue;
                    }
                    NameDir::In(d) => (d, false),
                    NameDir::Under(d) => (d, true),
                };
                if !canonical(dir) || !dir.ends_with('/') {
                    return Err(not_canonical(dir));
                }
                let key_len = if below { dir.len() } else { dir.len() + 1 };
                if key_len > RULE_PATH_MAX {
                    return Err(too_long(
                        &format!("the directory {dir:?}"),
                        RULE_PATH_MAX - 2,
                    ));
                }
                let key = key(dir.as_bytes());
                let bits = (key_len * 8) as u32;
                match scoped.iter_mut().find(|(b, k, _)| *b == bits && *k == key) {
                    Some((_, _, list)) => list.push(index),
                    None => scoped.push((bits, key, vec![index])),
                }
            }
        }
    }
    push_down(&mut out.paths);

    // Each directory entry's scope holds its own rules and those of every entry covering it.
    let mut scopes: Vec<(u32, Vec<usize>)> = vec![(0, anywhere)];
    for (id, (bits, key, _)) in scoped.iter().enumerate() {
        let id = id as u32 + 1;
        let mut members: Vec<usize> = scoped
            .iter()
            .filter(|(b, k, _)| covers(*b, k, *bits, key))
            .flat_map(|(_, _, list)| list.iter().copied())
            .collect();
        members.sort_unstable();
        members.dedup();
        out.dirs.push((*bits, *key, id));
        scopes.push((id, members));
    }
    for (scope, members) in &scopes {
        for &index in members {
            let rule = &rules[index];
            let OpenMatch::Name { name, .. } = &rule.target else {
                continue;
            };
            let value = value_of(rule, OPEN_RULE_ID_BASE + index as u32);
            let mut bytes = scope.to_be_bytes().to_vec();
            let (trie, len) = match name {
                NameMatch::Is(n) => {
                    bytes.extend_from_slice(n.as_bytes());
                    (&mut out.names, bytes.len() + 1)
                }
                NameMatch::StartsWith(n) => {
                    bytes.extend_from_slice(n.as_bytes());
                    (&mut out.names, bytes.len())
                }
                NameMatch::EndsWith(n) => {
                    bytes.extend(n.bytes().rev());
                    (&mut out.suffixes, bytes.len())
                }
            };
            merge(trie, len, key(&bytes), value);
        }
    }
    push_down(&mut out.names);
    push_down(&mut out.suffixes);
    Ok(out)
}

impl CompiledOpenRules {
    /// The top bit of a scope id: each policy's scopes take the bank its predecessor's do
    /// not, so while the maps change over, every directory maps to a scope whose names are
    /// all of one policy.
    pub const SCOPE_BANK: u32 = 1 << 31;

    /// Moves every directory scope (not scope 0) into the upper bank, or back to the lower.
    pub fn set_scope_bank(&mut self, upper: bool) {
        let rebank = |id: u32| match id {
            0 => 0,
            id if upper => id | Self::SCOPE_BANK,
            id => id & !Self::SCOPE_BANK,
        };
        for (_, _, id) in &mut self.dirs {
            *id = rebank(*id);
        }
        for (_, key, _) in self.names.iter_mut().chain(self.suffixes.iter_mut()) {
            let id = rebank(u32::from_be_bytes([key[0], key[1], key[2], key[3]]));
            key[..4].copy_from_slice(&id.to_be_bytes());
        }
    }
}

/// A zero-padded trie key.
fn key<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut key = [0u8; N];
    key[..bytes.len()].copy_from_slice(bytes);
    key
}

/// Whether the entry (`outer_bits`, `outer`) matches every key the entry (`bits`, `inner`)
/// matches: it is no longer, and a prefix of it.
fn covers<const N: usize>(outer_bits: u32, outer: &[u8; N], bits: u32, inner: &[u8; N]) -> bool {
    let n = (outer_bits / 8) as usize;
    outer_bits <= bits && outer[..n] == inner[..n]
}

fn merge<const N: usize>(
    entries: &mut Vec<TrieEntry<N, OpenRule>>,
    key_len: usize,
    key: [u8; N],
    value: OpenRule,
) {
    let bits = (key_len * 8) as u32;
    match entries.iter_mut().find(|(b, k, _)| *b == bits && *k == key) {
        Some((_, _, existing)) => *existing = existing.stricter(value),
        None => entries.push((bits, key, value)),
    }
}

/// Folds every covering entry into the entries it covers, so the longest match carries the
/// strictest verdict of every entry that matches.
fn push_down<const N: usize>(entries: &mut [TrieEntry<N, OpenRule>]) {
    let original: Vec<TrieEntry<N, OpenRule>> = entries.to_vec();
    for (bits, key, value) in entries.iter_mut() {
        for (b, k, v) in &original {
            if (*b, k) != (*bits, &*key) && covers(*b, k, *bits, key) {
                *value = value.stricter(*v);
            }
        }
    }
}

/// Names of access bits, for records and reviewers.
pub fn access_names(bits: u32) -> Vec<String> {
    [
        (access::READ, "read"),
        (access::WRITE, "write"),
        (access::CREATE, "create"),
        (access::TRUNCATE, "truncate"),
    ]
    .iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| name.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: Action, target: OpenMatch, access: u32) -> OpenRuleSpec {
        OpenRuleSpec {
            name: format!("{target:?}"),
            target,
            action,
            access,
            reason: None,
        }
    }

    fn name(dir: NameDir, name: NameMatch) -> OpenMatch {
        OpenMatch::Name { dir, name }
    }

    /// What the kernel does: one longest match per trie.
    fn longest<const N: usize, V: Copy>(
        entries: &[TrieEntry<N, V>],
        query: &[u8],
        bits: u32,
    ) -> Option<V> {
        let mut q = [0u8; N];
        q[..query.len()].copy_from_slice(query);
        entries
            .iter()
            .filter(|(b, k, _)| covers(*b, k, bits, &q))
            .max_by_key(|(b, _, _)| *b)
            .map(|(_, _, v)| *v)
    }

    /// The kernel's decision for a path (no inode map), as open.rs computes it.
    fn kernel(c: &CompiledOpenRules, path: &str, mode: u32) -> (u32, u32) {
        let with_nul = format!("{path}\0");
        let n = with_nul.len().min(RULE_PATH_MAX);
        let mut rule =
            longest(&c.paths, &with_nul.as_bytes()[..n], (n * 8) as u32).unwrap_or_default();
        let slash = path.rfind('/').unwrap();
        let (dir, file) = (&path[..=slash], &path[slash + 1..]);
        let dir_key = format!("{dir}\0");
        let scope = longest(&c.dirs, dir_key.as_bytes(), (dir_key.len() * 8) as u32).unwrap_or(0);
        for s in [0, scope] {
            let mut fwd = s.to_be_bytes().to_vec();
            fwd.extend_from_slice(file.as_bytes());
            fwd.push(0);
            if let Some(r) = longest(&c.names, &fwd, (fwd.len() * 8) as u32) {
                rule = rule.stricter(r);
            }
            let mut rev = s.to_be_bytes().to_vec();
            rev.extend(file.bytes().rev());
            if let Some(r) = longest(&c.suffixes, &rev, (rev.len() * 8) as u32) {
                rule = rule.stricter(r);
            }
        }
        if rule.read_rule == 0 {
            rule.read_verdict = c.default.read_verdict;
        }
        if rule.write_rule == 0 {
            rule.write_verdict = c.default.write_verdict;
        }
        rule.for_mode(mode)
    }

    const WRITE: u32 = access::WRITE | access::CREATE | access::TRUNCATE;

    #[test]
    fn exact_rules_carry_the_nul_and_prefixes_do_not() {
        let rules = [
            OpenRuleSpec::from_flag(Action::Deny, "/etc/shadow"),
            OpenRuleSpec::from_flag(Action::Ask, "/home/dev/.ssh/"),
        ];
        let compiled = compile(&rules, Action::Allow).unwrap();
        let (bits, key, rule) = compiled.paths[0];
        assert_eq!(bits, ("/etc/shadow".len() as u32 + 1) * 8);
        assert_eq!(&key[..12], b"/etc/shadow\0");
        assert_eq!(
            rule.for_mode(access::READ),
            (Verdict::Deny as u32, OPEN_RULE_ID_BASE)
        );
        let (bits, key, rule) = compiled.paths[1];
        assert_eq!(bits, "/home/dev/.ssh/".len() as u32 * 8);
        assert_eq!(&key[..15], b"/home/dev/.ssh/");
        assert_eq!(rule.for_mode(WRITE).0, Verdict::Ask as u32);
        assert_eq!(kernel(&compiled, "/etc/shadow.bak", access::READ).0, 0);
    }

    #[test]
    fn existing_files_also_match_by_inode_and_the_strictest_rule_wins() {
        let dir =
            std::env::temp_dir().join(format!("interceptor-open-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, b"x").unwrap();
        let path = file.to_str().unwrap();
        let compiled = compile(
            &[
                OpenRuleSpec::from_flag(Action::Audit, path),
                OpenRuleSpec::from_flag(Action::Deny, path),
            ],
            Action::Allow,
        )
        .unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(compiled.inodes.len(), 1);
        assert_eq!(
            compiled.inodes[0].0,
            InodeKey {
                dev: kernel_dev(meta.dev()),
                ino: meta.ino()
            }
        );
        assert_eq!(compiled.inodes[0].1.read_verdict, Verdict::Deny as u32);
        assert_eq!(compiled.paths.len(), 1, "one trie entry, the stricter rule");
        assert_eq!(compiled.paths[0].2.read_rule, OPEN_RULE_ID_BASE + 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stem_prefix_matches_names_that_start_with_it() {
        let compiled = compile(
            &[rule(
                Action::Ask,
                OpenMatch::Prefix("/root/.ssh/id_".into()),
                access::ALL,
            )],
            Action::Allow,
        )
        .unwrap();
        let (bits, key, _) = compiled.paths[0];
        assert_eq!(
            bits,
            "/root/.ssh/id_".len() as u32 * 8,
            "no NUL: id_rsa, id_ed25519 ... all match"
        );
        assert_eq!(&key[..14], b"/root/.ssh/id_");
        assert!(compiled.inodes.is_empty(), "a prefix names no single file");
    }

    /// The longest match wins in the kernel, so a narrower, laxer entry must not hide a
    /// wider, stricter one — in either access class.
    #[test]
    fn a_covering_directory_stays_in_force_beneath_a_laxer_entry() {
        let compiled = compile(
            &[
                rule(Action::Deny, OpenMatch::Prefix("/srv/".into()), WRITE),
                rule(Action::Ask, OpenMatch::Prefix("/srv/".into()), access::READ),
                rule(
                    Action::Audit,
                    OpenMatch::Prefix("/srv/public/".into()),
                    access::ALL,
                ),
                rule(
                    Action::Allow,
                    OpenMatch::Exact("/srv/public/x".into()),
                    access::ALL,
                ),
            ],
            Action::Allow,
        )
        .unwrap();
        for path in ["/srv/public/x", "/srv/public/y", "/srv/z"] {
            assert_eq!(
                kernel(&compiled, path, access::WRITE),
                (Verdict::Deny as u32, OPEN_RULE_ID_BASE),
                "{path}"
            );
            assert_eq!(
                kernel(&compiled, path, access::READ),
                (Verdict::Ask as u32, OPEN_RULE_ID_BASE + 1),
                "{path}"
            );
        }
        assert_eq!(kernel(&compiled, "/srvx/a", access::ALL).0, 0);
    }

    #[test]
    fn names_match_anywhere_in_a_directory_or_below_one() {
        let compiled = compile(
            &[
                rule(
                    Action::Ask,
                    name(NameDir::Anywhere, NameMatch::Is(".env".into())),
                    access::ALL,
                ),
                rule(
                    Action::Ask,
                    name(NameDir::Anywhere, NameMatch::StartsWith(".env.".into())),
                    access::ALL,
                ),
                rule(
                    Action::Deny,
                    name(
                        NameDir::In("/home/dev/.ssh/".into()),
                        NameMatch::EndsWith(".pem".into()),
                    ),
                    access::READ,
                ),
                rule(
                    Action::Audit,
                    name(
                        NameDir::Under("/home/dev/".into()),
                        NameMatch::EndsWith("_key".into()),
                    ),
                    access::ALL,
                ),
            ],
            Action::Allow,
        )
        .unwrap();
        let ask = Verdict::Ask as u32;
        let id = |i: u32| OPEN_RULE_ID_BASE + i;
        assert_eq!(kernel(&compiled, "/.env", access::READ), (ask, id(0)));
        assert_eq!(kernel(&compiled, "/a/b/.env", access::WRITE), (ask, id(0)));
        assert_eq!(
            kernel(&compiled, "/a/.env.local", access::READ),
            (ask, id(1))
        );
        assert_eq!(kernel(&compiled, "/a/.env.", access::READ), (ask, id(1)));
        assert_eq!(kernel(&compiled, "/a/.envrc", access::READ).0, 0);
        assert_eq!(kernel(&compiled, "/a/x.env", access::READ).0, 0);
        let deny = (Verdict::Deny as u32, id(2));
        assert_eq!(
            kernel(&compiled, "/home/dev/.ssh/a.pem", access::READ),
            deny
        );
        assert_eq!(kernel(&compiled, "/home/dev/.ssh/.pem", access::READ), deny);
        assert_eq!(
            kernel(&compiled, "/home/dev/.ssh/a.pem", access::WRITE).0,
            0,
            "read only"
        );
        assert_eq!(
            kernel(&compiled, "/home/dev/.ssh/sub/a.pem", access::READ).0,
            0,
            "* stops at /"
        );
        assert_eq!(
            kernel(&compiled, "/home/dev/.sshx/a.pem", access::READ).0,
            0
        );
        assert_eq!(kernel(&compiled, "/home/dev/a.pem.bak", access::READ).0, 0);
        let audit = (Verdict::Audit as u32, id(3));
        assert_eq!(kernel(&compiled, "/home/dev/host_key", access::READ), audit);
        assert_eq!(
            kernel(&compiled, "/home/dev/a/b/host_key", access::READ),
            audit
        );
        assert_eq!(
            kernel(&compiled, "/home/dev/.ssh/x.pem_key", access::WRITE),
            audit,
            "below /home/dev/ includes .ssh/: its scope holds the covering rule too"
        );
        assert_eq!(
            kernel(&compiled, "/home/dev/.ssh/host_key", access::READ),
            audit
        );
        assert_eq!(kernel(&compiled, "/home/devx/host_key", access::READ).0, 0);
        assert_eq!(compiled.dirs.len(), 2);
    }

    #[test]
    fn the_default_applies_to_each_access_class_no_rule_names() {
        let compiled = compile(
            &[
                rule(
                    Action::Allow,
                    OpenMatch::Prefix("/usr/".into()),
                    access::READ,
                ),
                rule(
                    Action::Audit,
                    OpenMatch::Prefix("/tmp/".into()),
                    access::ALL,
                ),
            ],
            Action::Ask,
        )
        .unwrap();
        let ask = Verdict::Ask as u32;
        assert_eq!(kernel(&compiled, "/usr/lib/libc.so.6", access::READ).0, 0);
        assert_eq!(
            kernel(&compiled, "/usr/lib/libc.so.6", access::WRITE),
            (ask, 0)
        );
        assert_eq!(
            kernel(&compiled, "/tmp/x", access::ALL).0,
            Verdict::Audit as u32
        );
        assert_eq!(kernel(&compiled, "/etc/hosts", access::READ), (ask, 0));
    }

    #[test]
    fn paths_and_names_the_kernel_cannot_match_are_rejected() {
        for bad in ["relative/file", "/a/../b", "/a//b", "/a/./b"] {
            let err =
                compile(&[OpenRuleSpec::from_flag(Action::Deny, bad)], Action::Allow).unwrap_err();
            assert!(
                err.contains("not an absolute canonical path"),
                "{bad}: {err}"
            );
        }
        let long = format!("/{}", "x".repeat(RULE_PATH_MAX));
        assert!(
            compile(
                &[OpenRuleSpec::from_flag(Action::Deny, &long)],
                Action::Allow
            )
            .unwrap_err()
            .contains("longer")
        );
        let long_name = name(
            NameDir::Anywhere,
            NameMatch::EndsWith("x".repeat(RULE_NAME_MAX + 1)),
        );
        assert!(
            compile(&[rule(Action::Deny, long_name, access::ALL)], Action::Allow)
                .unwrap_err()
                .contains("longer")
        );
        let bad_dir = name(NameDir::In("/a/../".into()), NameMatch::Is("x".into()));
        assert!(
            compile(&[rule(Action::Deny, bad_dir, access::ALL)], Action::Allow)
                .unwrap_err()
                .contains("canonical")
        );
    }

    const PATTERNS: [&str; 12] = [
        "/a/**",
        "/a/b/**",
        "/a/b/c",
        "**/.env",
        "**/.env.*",
        "/a/*.pem",
        "/a/**/*_key",
        "/a/b/*.pem",
        "**/*.pem",
        "/a/b/id_*",
        "/a/.*/**",
        "/z/**/id_rsa",
    ];
    const PATHS: [&str; 16] = [
        "/a/x.pem",
        "/a/b/x.pem",
        "/a/b/c",
        "/a/b/c/.env",
        "/a/.env",
        "/a/.env.x",
        "/z/.env",
        "/z/.envrc",
        "/a/b/host_key",
        "/a/host_key",
        "/a/b/id_rsa",
        "/a/.ssh/config",
        "/z/q.pem",
        "/z/y",
        "/z/y/id_rsa",
        "/a/b/id_rsa/x",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// The kernel's maps, compiled from a random policy, give every open exactly the
        /// userspace matcher's verdict (`dir/stem*/**` also covers `dir/stem*`: there the
        /// kernel may only be stricter).
        #[test]
        fn the_kernel_maps_decide_as_the_policy_does(
            rules in proptest::collection::vec((0..PATTERNS.len(), 0..4usize, 0..3usize), 1..7),
            default in 0..4usize,
        ) {
            use crate::policy::{AccessMode, OpenContext, Policy};
            let actions = ["allow", "audit", "ask", "deny"];
            let accesses = ["read", "write", "any"];
            let mut text = format!("version = 1\n[defaults]\nopen = \"{}\"\n", actions[default]);
            for (i, (pattern, action, access)) in rules.iter().enumerate() {
                text += &format!(
                    "[[rule]]\nname = \"r{i}\"\noperation = \"open\"\npath = \"{}\"\naccess = \"{}\"\naction = \"{}\"\n",
                    PATTERNS[*pattern], accesses[*access], actions[*action]
                );
            }
            // A widened stem laxer than the default is refused by the schema.
            let Ok(policy) = Policy::parse(&text, "p.toml") else {
                proptest::prop_assert!(text.contains("/a/.*/**"), "{text}");
                return Ok(());
            };
            let compiled = policy.compile();
            let specs = policy_rules(&policy, &compiled);
            let maps = compile(&specs, compiled.open_default).unwrap();
            for path in PATHS {
                for (mode, bits) in [(AccessMode::READ, access::READ), (AccessMode::WRITE, access::WRITE)] {
                    let expected = policy.evaluate_open(&OpenContext {
                        agent: None,
                        uid: None,
                        path: path.into(),
                        access: mode,
                        home: None,
                    });
                    let (verdict, _) = kernel(&maps, path, bits);
                    let want = Verdict::from(expected.action) as u32;
                    // `/a/.*/**` compiles to the prefix `/a/.`, which also covers `/a/.env`.
                    if path.starts_with("/a/.") && path.matches('/').count() == 2 {
                        proptest::prop_assert!(verdict >= want, "{path} {bits}: kernel {verdict}, policy {want}\n{text}");
                    } else {
                        proptest::prop_assert_eq!(verdict, want, "{} {}\n{}", path, bits, text);
                    }
                }
            }
        }
    }

    #[test]
    fn access_bits_have_names() {
        assert_eq!(
            access_names(access::READ | access::TRUNCATE),
            ["read", "truncate"]
        );
        assert!(access_names(0).is_empty());
    }
}
