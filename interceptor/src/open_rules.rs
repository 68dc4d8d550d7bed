//! Open rules and their compilation into the kernel's `OPEN_INODES` and `OPEN_PATHS` maps.
//!
//! A rule names a path, either exactly (that file) or as a prefix (every path starting with
//! it: a directory `/dir/`, or a stem such as `/root/.ssh/id_`). Exact rules match by the file's identity (device, inode)
//! when it exists — so hardlinks and other names reach them — and by path, including the
//! terminating NUL in the trie key so `/etc/shadow` never matches `/etc/shadow.bak`. The
//! kernel compares against d_path output, which is canonical: rule paths must be too.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use interceptor_common::{InodeKey, OpenRule, RULE_PATH_MAX, Verdict, access};

use crate::policy::{Action, kernel_dev};

/// Open rule ids start here, above any policy rule index, so events name their rule.
pub const OPEN_RULE_ID_BASE: u32 = 1 << 20;

/// The rule that keeps agents out of the daemon's own files.
pub const DAEMON_FILES_RULE: &str = "builtin:daemon-files";

/// One open rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRuleSpec {
    pub name: String,
    /// Absolute canonical path (or path stem, for a prefix).
    pub path: String,
    /// Match every path starting with `path`, not just `path`.
    pub prefix: bool,
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
            path: path.to_string(),
            prefix: path.ends_with('/'),
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
                path: path.clone(),
                prefix: path.ends_with('/'),
                action: Action::Deny,
                access: access::ALL,
                reason: Some("the daemon's own files: no agent reads or changes them".into()),
            })
            .collect()
    }
}

/// Rules resolved for the kernel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompiledOpenRules {
    pub inodes: Vec<(InodeKey, OpenRule)>,
    /// (prefix length in bits, key bytes, rule)
    pub paths: Vec<(u32, [u8; RULE_PATH_MAX], OpenRule)>,
}

/// Compiles rules; `rules[i]` gets id `OPEN_RULE_ID_BASE + i`. Rejects paths the kernel
/// could never match (relative, not canonical, too long) instead of dropping them.
pub fn compile(rules: &[OpenRuleSpec]) -> Result<CompiledOpenRules, String> {
    let mut out = CompiledOpenRules::default();
    for (index, rule) in rules.iter().enumerate() {
        let value = OpenRule {
            verdict: Verdict::from(rule.action) as u32,
            rule_id: OPEN_RULE_ID_BASE + index as u32,
            access: rule.access,
            _pad: 0,
        };
        let path = rule.path.as_str();
        let canonical = path.starts_with('/')
            && !path.contains("//")
            && !path.split('/').any(|c| c == "." || c == "..");
        if !canonical {
            return Err(format!(
                "open rule {}: {path:?} is not an absolute canonical path",
                rule.name
            ));
        }
        let prefix = rule.prefix;
        // Exact keys carry the NUL; both must fit the trie key.
        let key_len = if prefix { path.len() } else { path.len() + 1 };
        if key_len > RULE_PATH_MAX {
            return Err(format!(
                "open rule {}: {path:?} is longer than the kernel matches ({} bytes)",
                rule.name,
                RULE_PATH_MAX - 1
            ));
        }
        let mut key = [0u8; RULE_PATH_MAX];
        key[..path.len()].copy_from_slice(path.as_bytes());
        merge_path(&mut out.paths, (key_len * 8) as u32, key, value);
        let existing = (!prefix)
            .then(|| std::fs::metadata(Path::new(path)).ok())
            .flatten();
        if let Some(meta) = existing {
            let identity = InodeKey {
                dev: kernel_dev(meta.dev()),
                ino: meta.ino(),
            };
            match out.inodes.iter_mut().find(|(k, _)| *k == identity) {
                Some((_, existing)) if value.verdict > existing.verdict => *existing = value,
                Some(_) => {}
                None => out.inodes.push((identity, value)),
            }
        }
    }
    Ok(out)
}

fn merge_path(
    paths: &mut Vec<(u32, [u8; RULE_PATH_MAX], OpenRule)>,
    bits: u32,
    key: [u8; RULE_PATH_MAX],
    value: OpenRule,
) {
    match paths.iter_mut().find(|(b, k, _)| *b == bits && *k == key) {
        Some((_, _, existing)) if value.verdict > existing.verdict => *existing = value,
        Some(_) => {}
        None => paths.push((bits, key, value)),
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

    #[test]
    fn exact_rules_carry_the_nul_and_prefixes_do_not() {
        let rules = [
            OpenRuleSpec::from_flag(Action::Deny, "/etc/shadow"),
            OpenRuleSpec::from_flag(Action::Ask, "/home/dev/.ssh/"),
        ];
        let compiled = compile(&rules).unwrap();
        let (bits, key, rule) = compiled.paths[0];
        assert_eq!(bits, ("/etc/shadow".len() as u32 + 1) * 8);
        assert_eq!(&key[..12], b"/etc/shadow\0");
        assert_eq!(
            (rule.verdict, rule.rule_id),
            (Verdict::Deny as u32, OPEN_RULE_ID_BASE)
        );
        let (bits, key, rule) = compiled.paths[1];
        assert_eq!(bits, "/home/dev/.ssh/".len() as u32 * 8);
        assert_eq!(&key[..15], b"/home/dev/.ssh/");
        assert_eq!(rule.verdict, Verdict::Ask as u32);
        assert_eq!(rule.access, access::ALL);
    }

    #[test]
    fn existing_files_also_match_by_inode_and_the_strictest_rule_wins() {
        let dir =
            std::env::temp_dir().join(format!("interceptor-open-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, b"x").unwrap();
        let path = file.to_str().unwrap();
        let compiled = compile(&[
            OpenRuleSpec::from_flag(Action::Audit, path),
            OpenRuleSpec::from_flag(Action::Deny, path),
        ])
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
        assert_eq!(compiled.inodes[0].1.verdict, Verdict::Deny as u32);
        assert_eq!(compiled.paths.len(), 1, "one trie entry, the stricter rule");
        assert_eq!(compiled.paths[0].2.rule_id, OPEN_RULE_ID_BASE + 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stem_prefix_matches_names_that_start_with_it() {
        let rule = OpenRuleSpec {
            prefix: true,
            ..OpenRuleSpec::from_flag(Action::Ask, "/root/.ssh/id_")
        };
        let compiled = compile(&[rule]).unwrap();
        let (bits, key, _) = compiled.paths[0];
        assert_eq!(
            bits,
            "/root/.ssh/id_".len() as u32 * 8,
            "no NUL: id_rsa, id_ed25519 ... all match"
        );
        assert_eq!(&key[..14], b"/root/.ssh/id_");
        assert!(compiled.inodes.is_empty(), "a prefix names no single file");
    }

    #[test]
    fn paths_the_kernel_cannot_match_are_rejected() {
        for bad in ["relative/file", "/a/../b", "/a//b", "/a/./b"] {
            let err = compile(&[OpenRuleSpec::from_flag(Action::Deny, bad)]).unwrap_err();
            assert!(
                err.contains("not an absolute canonical path"),
                "{bad}: {err}"
            );
        }
        let long = format!("/{}", "x".repeat(RULE_PATH_MAX));
        assert!(
            compile(&[OpenRuleSpec::from_flag(Action::Deny, &long)])
                .unwrap_err()
                .contains("longer")
        );
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
