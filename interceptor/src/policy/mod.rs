//! The exec rule list (policy format version 1): which binaries an agent may not run, and
//! which wait for a human. Rules name a binary by path; the daemon resolves each path to
//! its (device, inode) so the kernel matches the file itself, whatever name it is run by
//! (symlink, hardlink, relative path).
//!
//! Decoding is strict: an unknown field, operation or action is an error naming its
//! file:line:col, and the daemon refuses to start on it.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use interceptor_common::{InodeKey, Verdict};
use serde::{Deserialize, Serialize};

/// The policy shipped with interceptor, used when no policy file is given or installed.
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.toml");

/// Why a policy was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// An action a rule can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Audit,
    Ask,
    Deny,
}

impl From<Action> for Verdict {
    fn from(action: Action) -> Self {
        match action {
            Action::Allow => Verdict::Allow,
            Action::Audit => Verdict::Audit,
            Action::Ask => Verdict::Ask,
            Action::Deny => Verdict::Deny,
        }
    }
}

/// Operations a rule applies to. Only exec exists in format version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Exec,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name, reported with every decision the rule makes.
    pub name: String,
    pub operation: Operation,
    /// Absolute path of the binary.
    pub binary: String,
    pub action: Action,
    /// Why the rule exists; shown to reviewers.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version; only 1 exists.
    pub version: u32,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

impl Policy {
    /// Parses and validates a policy; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or((1, 1));
            PolicyError::Parse {
                path: origin.into(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let invalid = |message: String| PolicyError::Invalid {
            path: origin.into(),
            message,
        };
        if policy.version != 1 {
            return Err(invalid(format!(
                "unsupported version {} (this build reads version 1)",
                policy.version
            )));
        }
        let mut names = std::collections::HashSet::new();
        for rule in &policy.rules {
            if rule.name.trim().is_empty() {
                return Err(invalid("a rule has an empty name".into()));
            }
            if !names.insert(rule.name.as_str()) {
                return Err(invalid(format!("rule name {:?} is used twice", rule.name)));
            }
            if !rule.binary.starts_with('/') {
                return Err(invalid(format!(
                    "rule {:?}: binary {:?} is not an absolute path",
                    rule.name, rule.binary
                )));
            }
        }
        Ok(policy)
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Adds rules given on the command line (`--deny-exec`, `--hold-exec`).
    pub fn add_cli_rule(&mut self, action: Action, binary: &str) {
        let flag = match action {
            Action::Deny => "deny-exec",
            Action::Ask => "hold-exec",
            Action::Allow | Action::Audit => "exec",
        };
        self.rules.push(Rule {
            name: format!("cli:{flag}:{binary}"),
            operation: Operation::Exec,
            binary: binary.into(),
            action,
            reason: Some(format!("given as --{flag} on the daemon's command line")),
        });
    }

    /// Resolves every rule's binary to the identity the kernel matches on. Rules whose
    /// binary does not exist on this host are returned separately: they cannot match.
    /// Where two rules name the same file, the most restrictive action wins.
    pub fn compile(&self) -> CompiledPolicy {
        let mut exec: Vec<CompiledExecRule> = Vec::new();
        let mut unresolved = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            match std::fs::metadata(&rule.binary) {
                Ok(meta) => {
                    let key = InodeKey {
                        dev: kernel_dev(meta.dev()),
                        ino: meta.ino(),
                    };
                    let rule_id = index as u32 + 1;
                    match exec.iter_mut().find(|r| r.key == key) {
                        Some(existing)
                            if restrictiveness(rule.action) > restrictiveness(existing.action) =>
                        {
                            existing.action = rule.action;
                            existing.rule_id = rule_id;
                        }
                        Some(_) => {}
                        None => exec.push(CompiledExecRule {
                            key,
                            action: rule.action,
                            rule_id,
                        }),
                    }
                }
                Err(e) => unresolved.push((rule.name.clone(), format!("{}: {e}", rule.binary))),
            }
        }
        CompiledPolicy { exec, unresolved }
    }

    /// The rule with the 1-based id the kernel reports.
    pub fn rule(&self, rule_id: u32) -> Option<&Rule> {
        rule_id
            .checked_sub(1)
            .and_then(|i| self.rules.get(i as usize))
    }
}

/// A policy resolved against this host's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPolicy {
    /// Entries for the kernel's `EXEC_RULES` map.
    pub exec: Vec<CompiledExecRule>,
    /// (rule name, why) for rules whose binary could not be resolved.
    pub unresolved: Vec<(String, String)>,
}

/// One `EXEC_RULES` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompiledExecRule {
    pub key: InodeKey,
    pub action: Action,
    /// 1-based index of the rule in the policy.
    pub rule_id: u32,
}

fn restrictiveness(action: Action) -> u8 {
    match action {
        Action::Allow => 0,
        Action::Audit => 1,
        Action::Ask => 2,
        Action::Deny => 3,
    }
}

/// Converts a userspace `st_dev` to the kernel's internal encoding (`MKDEV`: major << 20 |
/// minor), which is what `super_block.s_dev` holds.
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_policy_parses() {
        let policy = Policy::parse(DEFAULT_POLICY, "policies/default.toml")
            .expect("default policy is valid");
        assert!(!policy.rules.is_empty());
    }

    #[test]
    fn unknown_field_is_rejected_with_its_position() {
        let text = "version = 1\n\n[[rule]]\nname = \"x\"\noperation = \"exec\"\nbinary = \"/bin/true\"\naction = \"deny\"\nseverity = \"high\"\n";
        let err = Policy::parse(text, "p.toml").unwrap_err();
        let PolicyError::Parse {
            path,
            line,
            message,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(path, "p.toml");
        assert_eq!(*line, 8, "the error points at the unknown field: {err}");
        assert!(message.contains("severity"), "{err}");
    }

    #[test]
    fn unknown_action_and_bad_values_are_rejected() {
        let base =
            "version = 1\n[[rule]]\nname = \"x\"\noperation = \"exec\"\nbinary = \"/bin/true\"\n";
        let err = Policy::parse(&format!("{base}action = \"maybe\"\n"), "p.toml").unwrap_err();
        assert!(matches!(&err, PolicyError::Parse { line: 6, .. }), "{err}");
        assert!(err.to_string().contains("maybe"), "{err}");

        let err = Policy::parse("version = 2\n", "p.toml").unwrap_err();
        assert!(err.to_string().contains("unsupported version 2"), "{err}");

        let rel = "version = 1\n[[rule]]\nname = \"x\"\noperation = \"exec\"\nbinary = \"true\"\naction = \"deny\"\n";
        assert!(
            Policy::parse(rel, "p.toml")
                .unwrap_err()
                .to_string()
                .contains("not an absolute path")
        );

        let dup = format!("{base}action = \"deny\"\n{}", &base[12..]) + "action = \"ask\"\n";
        assert!(
            Policy::parse(&dup, "p.toml")
                .unwrap_err()
                .to_string()
                .contains("used twice")
        );

        let op = "version = 1\n[[rule]]\nname = \"x\"\noperation = \"open\"\nbinary = \"/bin/true\"\naction = \"deny\"\n";
        assert!(matches!(
            Policy::parse(op, "p.toml").unwrap_err(),
            PolicyError::Parse { line: 4, .. }
        ));
    }

    #[test]
    fn compile_resolves_inodes_and_keeps_the_most_restrictive_rule() {
        let dir = std::env::temp_dir().join(format!("interceptor-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("tool");
        std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
        let link = dir.join("tool-link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&bin, &link).unwrap();

        let mut policy = Policy {
            version: 1,
            rules: vec![],
        };
        policy.add_cli_rule(Action::Ask, link.to_str().unwrap());
        policy.add_cli_rule(Action::Deny, bin.to_str().unwrap());
        policy.add_cli_rule(Action::Deny, "/nonexistent/interceptor-test-binary");
        let compiled = policy.compile();

        let meta = std::fs::metadata(&bin).unwrap();
        assert_eq!(
            compiled.exec.len(),
            1,
            "symlink and target are one file: {compiled:?}"
        );
        assert_eq!(
            compiled.exec[0].key,
            InodeKey {
                dev: kernel_dev(meta.dev()),
                ino: meta.ino()
            }
        );
        assert_eq!(compiled.exec[0].action, Action::Deny);
        assert_eq!(compiled.exec[0].rule_id, 2);
        assert_eq!(compiled.unresolved.len(), 1);
        assert_eq!(policy.rule(2).unwrap().action, Action::Deny);
        assert!(policy.rule(0).is_none() && policy.rule(4).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kernel_dev_encoding() {
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 70000)), (259 << 20) | 70000);
    }
}
