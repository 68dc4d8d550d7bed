//! Scenarios: shipped policies, rejected policies, decisions, compilation, drift of the
//! documentation, and properties of the matcher.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use interceptor_common::InodeKey;
use proptest::prelude::*;

use super::*;

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(toml_files(&path));
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn exec(binary: &str, argv: &[&str]) -> ExecContext {
    ExecContext {
        agent: Some("agent".into()),
        uid: Some(1000),
        binary: binary.into(),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        cwd: Some("/home/agent/src".into()),
        parent: Some("/usr/bin/bash".into()),
        env_keys: Some(Vec::new()),
        home: Some("/home/agent".into()),
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("interceptor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, b"\x7fELF").unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_shipped_policy_parses_and_its_inline_tests_pass() {
    let files = toml_files(&policies_dir());
    assert!(files.len() >= 4, "default.toml and the examples: {files:?}");
    for file in files {
        let policy = Policy::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !policy.tests.is_empty(),
            "{} has no [[test]] cases",
            file.display()
        );
        let failures: Vec<String> = policy
            .run_tests()
            .into_iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{}: {}", r.name, r.failure.unwrap_or_default()))
            .collect();
        assert!(
            failures.is_empty(),
            "{}:\n{}",
            file.display(),
            failures.join("\n")
        );
    }
}

#[test]
fn the_built_in_default_is_policies_default_toml() {
    let policy = Policy::parse(DEFAULT_POLICY, "built-in default policy").unwrap();
    let on_disk = Policy::load(&policies_dir().join("default.toml")).unwrap();
    assert_eq!(policy.version(), on_disk.version());
    // Every rule carries both frameworks' control tags.
    for rule in &policy.rules {
        assert!(
            rule.controls.iter().any(|c| c.starts_with("SOC2:"))
                && rule.controls.iter().any(|c| c.starts_with("NIST-800-53:")),
            "rule {} lacks SOC 2 or NIST 800-53 tags: {:?}",
            rule.name,
            rule.controls
        );
    }
}

#[test]
fn every_invalid_policy_is_rejected_at_its_line_and_column() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/policy/testdata/invalid");
    let files = toml_files(&dir);
    assert!(files.len() >= 20, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect: LINE:COL: text` line", file.display()));
        let mut parts = expect.splitn(3, ':');
        let line: usize = parts.next().unwrap().parse().unwrap();
        let column: usize = parts.next().unwrap().parse().unwrap();
        let needle = parts.next().unwrap().trim();
        let err = Policy::parse(&text, "p.toml").expect_err(&file.display().to_string());
        let PolicyError::Parse {
            line: l,
            column: c,
            message,
            ..
        } = &err
        else {
            panic!("{}: {err}", file.display())
        };
        assert!(
            (*l, *c) == (line, column) && message.contains(needle),
            "{}: expected {line}:{column}: {needle}\n  got {err}",
            file.display()
        );
    }
}

#[test]
fn the_original_minimal_format_still_reads() {
    let text = "version = 1\n[[rule]]\nname = \"hold-curl\"\noperation = \"exec\"\nbinary = \"/usr/bin/curl\"\naction = \"ask\"\nreason = \"Can send local data anywhere.\"\n";
    let policy = Policy::parse(text, "old.toml").unwrap();
    let rule = policy.rule(1).unwrap();
    assert_eq!(
        (rule.name.as_str(), rule.action),
        ("hold-curl", Action::Ask)
    );
    assert_eq!(
        rule.reason.as_deref(),
        Some("Can send local data anywhere.")
    );
    assert_eq!(rule.line, 2, "the rule is reported at its [[rule]] line");
    let d = policy.evaluate_exec(&exec("/usr/bin/curl", &["curl", "https://example.com"]));
    assert_eq!(d.action, Action::Ask);
    assert_eq!(d.reason, "Can send local data anywhere.");
}

#[test]
fn most_restrictive_rule_wins_and_ties_go_to_the_first_in_the_file() {
    let text = r#"
version = 1
[[rule]]
name = "git-is-fine"
operation = "exec"
binary = "/usr/bin/git"
action = "allow"
[[rule]]
name = "push-is-recorded"
operation = "exec"
binary = "/usr/bin/git"
arg = [{ index = 1, glob = "push" }]
action = "audit"
reason = "pushes are recorded"
[[rule]]
name = "force-push-asks"
operation = "exec"
binary = "/usr/bin/git"
any_arg = ["--force", "-f"]
action = "ask"
reason = "first ask rule"
controls = ["SOC2:CC8.1"]
[[rule]]
name = "force-push-asks-too"
operation = "exec"
basename = "git"
argv_regex = '--force'
action = "ask"
reason = "second ask rule"
"#;
    let policy = Policy::parse(text, "p.toml").unwrap();
    let d = policy.evaluate_exec(&exec("/usr/bin/git", &["git", "push", "--force"]));
    assert_eq!(d.action, Action::Ask);
    assert_eq!(
        d.winner.as_ref().unwrap().name,
        "force-push-asks",
        "tie: first in file wins"
    );
    assert_eq!(d.reason, "first ask rule");
    assert_eq!(d.controls, ["SOC2:CC8.1"]);
    let names: Vec<&str> = d.matched.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "git-is-fine",
            "push-is-recorded",
            "force-push-asks",
            "force-push-asks-too"
        ]
    );
    assert_eq!(d.policy_version, policy.version());

    let d = policy.evaluate_exec(&exec("/usr/bin/git", &["git", "push", "origin"]));
    assert_eq!(
        (d.action, d.reason.as_str()),
        (Action::Audit, "pushes are recorded")
    );
    let d = policy.evaluate_exec(&exec("/usr/bin/git", &["git", "status"]));
    assert_eq!(d.action, Action::Allow);
    let d = policy.evaluate_exec(&exec("/usr/bin/ls", &["ls"]));
    assert_eq!(
        (d.action, d.winner.is_none()),
        (Action::Audit, true),
        "the default applies"
    );
}

#[test]
fn the_policy_version_is_the_sha256_of_the_source_and_cli_rules() {
    let a = Policy::parse("version = 1\n", "a").unwrap();
    // `printf 'version = 1\n' | sha256sum`
    assert_eq!(
        a.version(),
        "dbab12665d98aef021ba64953c61b0ed8a908cfb56a1c01e2fcb4b052b71a2a1"
    );
    assert_eq!(a.version().len(), 64);
    let b = Policy::parse("version = 1\n# a comment changes the version\n", "b").unwrap();
    assert_ne!(a.version(), b.version());
    let mut c = a.clone();
    c.add_cli_rule(Action::Deny, "/usr/bin/shred");
    assert_ne!(
        a.version(),
        c.version(),
        "command-line rules are part of what decides"
    );
    let d = c.evaluate_exec(&exec("/usr/bin/shred", &["shred", "x"]));
    assert_eq!(
        (d.action, d.policy_version.as_str()),
        (Action::Deny, c.version())
    );
}

#[test]
fn compile_resolves_inodes_and_keeps_the_most_restrictive_rule() {
    let dir = Scratch::new("policy-compile");
    let bin = dir.file("tool");
    let link = dir.0.join("tool-link");
    std::os::unix::fs::symlink(&bin, &link).unwrap();

    let mut policy = Policy::empty("test");
    policy.add_cli_rule(Action::Ask, link.to_str().unwrap());
    policy.add_cli_rule(Action::Deny, &bin);
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
    assert_eq!(compiled.exec[0].decided_by, DecidedBy::Kernel);
    assert_eq!(compiled.unresolved.len(), 1);
    assert_eq!(policy.rule(2).unwrap().action, Action::Deny);
    assert!(policy.rule(0).is_none() && policy.rule(4).is_none());
}

#[test]
fn argv_rules_make_the_kernel_hold_for_userspace_and_never_weaken_it() {
    let dir = Scratch::new("policy-argv");
    let git = dir.file("git");
    let psql = dir.file("psql");
    let shred = dir.file("shred");
    let curl = dir.file("curl");
    let text = format!(
        r#"
version = 1
[[rule]]
name = "git-recorded"
operation = "exec"
binary = "{git}"
action = "audit"
[[rule]]
name = "force-push"
operation = "exec"
binary = "{git}"
any_arg = ["--force"]
action = "ask"
[[rule]]
name = "psql-allowed"
operation = "exec"
binary = "{psql}"
action = "allow"
[[rule]]
name = "psql-prod-allowed-with-label"
operation = "exec"
binary = "{psql}"
argv_regex = "prod"
action = "audit"
[[rule]]
name = "shred-denied"
operation = "exec"
binary = "{shred}"
action = "deny"
[[rule]]
name = "shred-verbose-asks"
operation = "exec"
binary = "{shred}"
any_arg = ["-v"]
action = "ask"
[[rule]]
name = "curl-upload-denied"
operation = "exec"
binary = "{curl}"
any_arg = ["--upload-file"]
action = "deny"
[[rule]]
name = "curl-asks"
operation = "exec"
binary = "{curl}"
action = "ask"
"#
    );
    let policy = Policy::parse(&text, "p.toml").unwrap();
    let compiled = policy.compile();
    let entry = |path: &str| {
        compiled
            .exec
            .iter()
            .find(|e| e.path == path)
            .unwrap()
            .clone()
    };
    let git_entry = entry(&git);
    assert_eq!(
        (git_entry.action, git_entry.decided_by, git_entry.rule_id),
        (Action::Ask, DecidedBy::Userspace, 2),
        "an argv rule that can ask makes the kernel hold git for userspace"
    );
    let psql_entry = entry(&psql);
    assert_eq!(
        (psql_entry.action, psql_entry.decided_by),
        (Action::Allow, DecidedBy::Kernel),
        "an audit-only argv rule does not hold: the exec runs either way"
    );
    assert_eq!(
        compiled.labelled_in_userspace,
        ["psql-prod-allowed-with-label"]
    );
    let shred_entry = entry(&shred);
    assert_eq!(
        (shred_entry.action, shred_entry.decided_by),
        (Action::Deny, DecidedBy::Kernel),
        "deny in the kernel stays deny"
    );
    let curl_entry = entry(&curl);
    assert_eq!(
        (curl_entry.action, curl_entry.decided_by, curl_entry.rule_id),
        (Action::Ask, DecidedBy::Userspace, 7),
        "a kernel ask that an argv rule could turn into deny is held for userspace"
    );
    let d = policy.evaluate_exec(&exec(&curl, &["curl", "--upload-file", "x"]));
    assert_eq!(d.action, Action::Deny);
    assert!(compiled.exec_fallback.is_none());

    // Userspace answers the held exec without a human when the answer is not ask.
    let d = policy.evaluate_exec(&exec(&git, &["git", "push"]));
    assert_eq!(d.action, Action::Audit);
    let d = policy.evaluate_exec(&exec(&git, &["git", "push", "--force"]));
    assert_eq!(d.action, Action::Ask);
}

#[test]
fn glob_and_basename_rules_fall_back_to_userspace_for_every_exec_loudly() {
    let dir = Scratch::new("policy-fallback");
    let make = dir.file("make");
    let text = format!(
        r#"
version = 1
[[agent]]
name = "data"
[[rule]]
name = "make-allowed"
operation = "exec"
binary = "{make}"
action = "allow"
[[rule]]
name = "any-pg-dump"
operation = "exec"
basename = ["pg_dump", "pg_dumpall"]
binary_glob = "/usr/lib/postgresql/*/bin/pg_dump"
agents = ["data"]
action = "ask"
"#
    );
    let policy = Policy::parse(&text, "p.toml").unwrap();
    let compiled = policy.compile();
    let fallback = compiled
        .exec_fallback
        .as_ref()
        .expect("a fallback, not a dropped rule");
    assert_eq!(fallback.agents.as_deref(), Some(&["data".to_string()][..]));
    assert_eq!(fallback.because, ["any-pg-dump"]);
    assert!(
        compiled
            .warnings()
            .iter()
            .any(|w| w.contains("agents data") && w.contains("any-pg-dump")),
        "{:?}",
        compiled.warnings()
    );
    let entry = &compiled.exec[0];
    assert_eq!(
        (entry.action, entry.decided_by),
        (Action::Ask, DecidedBy::Userspace),
        "an allow entry would let a copied pg_dump named make skip the basename rule"
    );

    let mut ctx = exec(
        "/usr/lib/postgresql/16/bin/pg_dump",
        &["pg_dump", "-h", "db"],
    );
    ctx.agent = Some("data".into());
    assert_eq!(policy.evaluate_exec(&ctx).action, Action::Ask);
    ctx.agent = Some("copilot".into());
    assert_eq!(
        policy.evaluate_exec(&ctx).action,
        Action::Audit,
        "other agents are not covered"
    );
}

#[test]
fn a_restrictive_default_is_a_userspace_fallback_too() {
    let policy = Policy::parse("version = 1\n[defaults]\nexec = \"ask\"\n", "strict").unwrap();
    let compiled = policy.compile();
    let fallback = compiled
        .exec_fallback
        .expect("every exec must reach userspace");
    assert_eq!(fallback.agents, None);
    assert_eq!(fallback.because, ["[defaults] exec = \"ask\""]);
}

#[test]
fn a_symlinked_binary_is_judged_as_the_file_it_points_to() {
    let dir = Scratch::new("policy-symlink");
    let real = dir.file("pg_dump");
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let innocent = dir.0.join("backup-helper");
    std::os::unix::fs::symlink(&real, &innocent).unwrap();
    let text = format!(
        "version = 1\n[[rule]]\nname = \"dumps\"\noperation = \"exec\"\nbinary = \"{real}\"\nargv_regex = 'prod'\naction = \"ask\"\n"
    );
    let policy = Policy::parse(&text, "p.toml").unwrap();

    // What the kernel reports for `./backup-helper -h prod-db` is the resolved file.
    let resolved = matcher::resolve_command("./backup-helper", &dir.0, "").unwrap();
    assert_eq!(
        resolved,
        std::fs::canonicalize(&real).unwrap().to_str().unwrap()
    );
    let d = policy.evaluate_exec(&exec(&resolved, &["backup-helper", "-h", "prod-db"]));
    assert_eq!(d.action, Action::Ask);
    // Found on $PATH under its other name, too.
    let via_path =
        matcher::resolve_command("backup-helper", Path::new("/"), dir.0.to_str().unwrap());
    assert_eq!(via_path.as_deref(), Some(resolved.as_str()));
    // And the kernel entry is the same inode whichever name is used.
    let key = policy.compile().exec[0].key;
    let meta = std::fs::metadata(&innocent).unwrap();
    assert_eq!(key.ino, meta.ino());
}

#[test]
fn quoted_and_split_arguments_are_judged_on_the_argv_the_program_gets() {
    let policy = Policy::parse(DEFAULT_POLICY, "default").unwrap();
    let shapes: [&[&str]; 5] = [
        &["psql", "-h", "prod-db"],
        &["psql", "-hprod-db"],
        &["psql", "--host=prod-db"],
        &["psql", "--host", "prod-db"],
        // `psql "-h" 'prod-db'` reaches the program as the first shape.
        &["psql", "-h", "prod-db", "-c", "select 1"],
    ];
    for argv in shapes {
        let d = policy.evaluate_exec(&exec("/usr/bin/psql", argv));
        assert_eq!(d.action, Action::Ask, "{argv:?}");
    }
    let d = policy.evaluate_exec(&exec("/usr/bin/psql", &["psql", "-h", "staging-db"]));
    assert_eq!(d.action, Action::Audit);
}

#[test]
fn unknown_facts_never_let_an_ask_rule_slip_and_never_make_an_allow_rule_match() {
    let text = r#"
version = 1
[[rule]]
name = "prod-cwd-asks"
operation = "exec"
binary = "/usr/bin/make"
cwd = "/srv/prod/**"
action = "ask"
[[rule]]
name = "preload-denied"
operation = "exec"
binary = "/usr/bin/make"
env = ["LD_PRELOAD"]
action = "deny"
[[rule]]
name = "from-ide-allowed"
operation = "exec"
binary = "/usr/bin/make"
parent = "/opt/ide/**"
action = "allow"
"#;
    let policy = Policy::parse(text, "p.toml").unwrap();
    let mut ctx = exec("/usr/bin/make", &["make"]);
    ctx.cwd = None;
    ctx.env_keys = None;
    ctx.parent = None;
    let d = policy.evaluate_exec(&ctx);
    assert_eq!(d.action, Action::Deny);
    let assumed: Vec<(&str, &[String])> = d
        .matched
        .iter()
        .map(|m| (m.name.as_str(), &m.assumed[..]))
        .collect();
    assert_eq!(
        assumed,
        [
            ("prod-cwd-asks", &["cwd".to_string()][..]),
            ("preload-denied", &["env".to_string()][..])
        ]
    );
    let mut known = exec("/usr/bin/make", &["make"]);
    known.parent = Some("/opt/ide/bin/ide".into());
    let d = policy.evaluate_exec(&known);
    assert_eq!((d.action, d.matched.len()), (Action::Allow, 1));
}

#[test]
fn open_rules_expand_tilde_per_agent_and_respect_the_access_mode() {
    let text = r#"
version = 1
[[agent]]
name = "ops"
uid = 1500
home = "/var/lib/ops-agent"
[[agent]]
name = "dev"
launched_name = ["claude*", "copilot"]
home = "/home/dev"
[[rule]]
name = "kube-config"
operation = "open"
path = "~/.kube/config"
action = "ask"
[[rule]]
name = "rc-writes"
operation = "open"
path = ["~/.bashrc"]
access = "write"
action = "deny"
[[rule]]
name = "ops-data"
operation = "open"
agents = ["ops"]
path = ["/srv/data/**", "**/*.sql", "**/id_rsa", "/srv/**/secret-*"]
action = "ask"
"#;
    let policy = Policy::parse(text, "p.toml").unwrap();
    let open = |agent: &str, path: &str, access| OpenContext {
        agent: Some(agent.into()),
        uid: None,
        path: path.into(),
        access,
        home: None,
    };
    let d = policy.evaluate_open(&open(
        "ops",
        "/var/lib/ops-agent/.kube/config",
        AccessMode::READ,
    ));
    assert_eq!(d.action, Action::Ask);
    let d = policy.evaluate_open(&open(
        "dev",
        "/var/lib/ops-agent/.kube/config",
        AccessMode::READ,
    ));
    assert_eq!(
        d.action,
        Action::Allow,
        "another agent's home is not dev's ~"
    );
    let d = policy.evaluate_open(&open("dev", "/home/dev/.bashrc", AccessMode::READ));
    assert_eq!(d.action, Action::Allow);
    let d = policy.evaluate_open(&open("dev", "/home/dev/.bashrc", AccessMode::WRITE));
    assert_eq!(d.action, Action::Deny);
    let d = policy.evaluate_open(&open("dev", "/srv/data/x.csv", AccessMode::READ));
    assert_eq!(d.action, Action::Allow, "ops-data applies to ops only");
    let d = policy.evaluate_open(&open("ops", "/srv/data/x.csv", AccessMode::READ));
    assert_eq!(d.action, Action::Ask);

    // Agents are recognised by uid or launched name.
    assert_eq!(
        policy
            .select_agent(1500, None, None)
            .map(|a| a.name.as_str()),
        Some("ops")
    );
    assert_eq!(
        policy
            .select_agent(1000, None, Some("claude-code"))
            .map(|a| a.name.as_str()),
        Some("dev")
    );
    assert!(policy.select_agent(1000, None, Some("cursor")).is_none());

    let compiled = policy.compile();
    let targets: Vec<(OpenTarget, DecidedBy, Option<&str>)> = compiled
        .open
        .iter()
        .map(|o| (o.target.clone(), o.decided_by, o.home.as_deref()))
        .collect();
    let exact = |p: &str| OpenTarget::Exact {
        path: p.into(),
        inode: None,
    };
    assert!(targets.contains(&(
        exact("/var/lib/ops-agent/.kube/config"),
        DecidedBy::Kernel,
        Some("/var/lib/ops-agent")
    )));
    assert!(targets.contains(&(
        exact("/home/dev/.kube/config"),
        DecidedBy::Kernel,
        Some("/home/dev")
    )));
    assert!(targets.contains(&(
        OpenTarget::Prefix("/srv/data/".into()),
        DecidedBy::Userspace,
        None
    )));
    let name = |dir: NameDir, name: NameMatch| OpenTarget::Name { dir, name };
    assert!(targets.contains(&(
        name(NameDir::Anywhere, NameMatch::EndsWith(".sql".into())),
        DecidedBy::Userspace,
        None
    )));
    assert!(targets.contains(&(
        name(NameDir::Anywhere, NameMatch::Is("id_rsa".into())),
        DecidedBy::Userspace,
        None
    )));
    assert!(targets.contains(&(
        name(
            NameDir::Under("/srv/".into()),
            NameMatch::StartsWith("secret-".into())
        ),
        DecidedBy::Userspace,
        None
    )));
    let rc = compiled.open.iter().find(|o| o.rule_id == 2).unwrap();
    assert_eq!((rc.access, rc.action), (access_mask::WRITE, Action::Deny));
}

#[test]
fn an_unknown_home_still_matches_tilde_rules_under_any_home() {
    let policy = Policy::parse(
        "version = 1\n[[rule]]\nname = \"keys\"\noperation = \"open\"\npath = \"~/.ssh/id_*\"\naction = \"ask\"\n",
        "p.toml",
    )
    .unwrap();
    let d = policy.evaluate_open(&OpenContext {
        agent: None,
        uid: Some(4_000_000),
        path: "/home/someone/.ssh/id_rsa".into(),
        access: AccessMode::READ,
        home: None,
    });
    assert_eq!(d.action, Action::Ask);
}

#[test]
fn asks_carry_reviewers_timeout_and_grant_limits() {
    let text = r#"
version = 1
[defaults]
timeout = "2m"
reviewers = ["oncall"]
[groups]
dba = ["alice", "bob"]
[[rule]]
name = "dumps"
operation = "exec"
binary = "/usr/bin/pg_dump"
action = "ask"
reviewers = ["@dba", "carol", "alice"]
timeout = "15m"
on_timeout = "deny"
grant = { max_ttl = "1h", max_uses = 3, scope = "exact-argv" }
severity = "high"
[[rule]]
name = "sudo"
operation = "exec"
binary = "/usr/bin/sudo"
action = "ask"
"#;
    let policy = Policy::parse(text, "p.toml").unwrap();
    let d = policy.evaluate_exec(&exec("/usr/bin/pg_dump", &["pg_dump"]));
    assert_eq!(d.reviewers, ["alice", "bob", "carol"]);
    assert_eq!(
        (d.timeout_secs, d.on_timeout, d.severity),
        (900, Action::Deny, Some(Severity::High))
    );
    let grant = policy.rule(1).unwrap().grant.clone().unwrap();
    assert_eq!(grant.max_ttl, Some(std::time::Duration::from_secs(3600)));
    assert_eq!(
        (grant.max_uses, grant.scope),
        (Some(3), GrantScope::ExactArgv)
    );
    let d = policy.evaluate_exec(&exec("/usr/bin/sudo", &["sudo", "id"]));
    assert_eq!(
        (d.reviewers.as_slice(), d.timeout_secs),
        (&["oncall".to_string()][..], 120)
    );
}

#[test]
fn docs_policy_md_documents_every_field_of_the_schema() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy.md"))
            .unwrap();
    let mut missing = Vec::new();
    for (section, fields) in schema::schema_fields() {
        assert!(!fields.is_empty(), "{section}");
        let Some(start) = doc.find(&format!("### `{section}`")) else {
            missing.push(format!("section heading ### `{section}`"));
            continue;
        };
        let body = &doc[start..];
        let body = &body[..body[4..].find("\n### ").map_or(body.len(), |i| i + 4)];
        for field in fields {
            if !body.contains(&format!("| `{field}` |")) {
                missing.push(format!("{section} `{field}`"));
            }
        }
    }
    for value in [
        "allow",
        "audit",
        "ask",
        "deny",
        "exec",
        "open",
        "read",
        "write",
        "any",
        "once",
        "exact-argv",
        "binary",
        "enforce",
        "monitor",
        "low",
        "medium",
        "high",
        "critical",
    ] {
        if !doc.contains(&format!("`{value}`")) {
            missing.push(format!("value `{value}`"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/policy.md is missing: {missing:#?}"
    );
}

// ------------------------------------------------------------------ properties

const BINARIES: [&str; 3] = ["/usr/bin/alpha", "/usr/bin/beta", "/opt/tools/gamma"];
const WORDS: [&str; 4] = ["push", "--force", "delete", "prod"];
const ACTIONS: [Action; 4] = [Action::Allow, Action::Audit, Action::Ask, Action::Deny];

/// A generated rule: which program, which argument must be present, what it does.
#[derive(Debug, Clone)]
struct GenRule {
    program: Option<(usize, bool)>, // (binary index, by basename)
    any_arg: Option<usize>,
    position: Option<(usize, usize)>, // (index 1..=2, word)
    action: Action,
}

fn gen_rule() -> impl Strategy<Value = GenRule> {
    (
        proptest::option::of((0..BINARIES.len(), any::<bool>())),
        proptest::option::of(0..WORDS.len()),
        proptest::option::of((1usize..=2, 0..WORDS.len())),
        0..ACTIONS.len(),
    )
        .prop_filter("a rule needs a matcher", |(p, a, pos, _)| {
            p.is_some() || a.is_some() || pos.is_some()
        })
        .prop_map(|(program, any_arg, position, action)| GenRule {
            program,
            any_arg,
            position,
            action: ACTIONS[action],
        })
}

fn to_toml(rules: &[GenRule]) -> String {
    let mut text = String::from("version = 1\n");
    for (i, r) in rules.iter().enumerate() {
        text += &format!(
            "[[rule]]\nname = \"r{i}\"\noperation = \"exec\"\naction = \"{}\"\n",
            r.action
        );
        if let Some((b, by_name)) = r.program {
            if by_name {
                text += &format!(
                    "basename = \"{}\"\n",
                    BINARIES[b].rsplit('/').next().unwrap()
                );
            } else {
                text += &format!("binary = \"{}\"\n", BINARIES[b]);
            }
        }
        if let Some(w) = r.any_arg {
            text += &format!("any_arg = [\"{}\"]\n", WORDS[w]);
        }
        if let Some((i, w)) = r.position {
            text += &format!("arg = [{{ index = {i}, glob = \"{}\" }}]\n", WORDS[w]);
        }
    }
    text
}

fn expected_match(r: &GenRule, binary: &str, argv: &[String]) -> bool {
    let program = r.program.is_none_or(|(b, by_name)| {
        if by_name {
            binary.rsplit('/').next() == BINARIES[b].rsplit('/').next()
        } else {
            binary == BINARIES[b]
        }
    });
    let any = r
        .any_arg
        .is_none_or(|w| argv[1..].iter().any(|a| a == WORDS[w]));
    let pos = r
        .position
        .is_none_or(|(i, w)| argv.get(i).is_some_and(|a| a == WORDS[w]));
    program && any && pos
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// explain lists exactly the rules that match, and the most restrictive one (first in
    /// file order among equals) decides.
    #[test]
    fn the_most_restrictive_matching_rule_always_wins(
        rules in proptest::collection::vec(gen_rule(), 1..12),
        binary in 0..BINARIES.len(),
        args in proptest::collection::vec(0..WORDS.len(), 0..4),
    ) {
        let policy = Policy::parse(&to_toml(&rules), "gen.toml").unwrap();
        let mut argv = vec!["cmd".to_string()];
        argv.extend(args.iter().map(|w| WORDS[*w].to_string()));
        let ctx = ExecContext { argv: argv.clone(), ..exec(BINARIES[binary], &[]) };
        let d = policy.evaluate_exec(&ctx);

        let expected: Vec<String> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| expected_match(r, BINARIES[binary], &argv))
            .map(|(i, _)| format!("r{i}"))
            .collect();
        let got: Vec<String> = d.matched.iter().map(|m| m.name.clone()).collect();
        prop_assert_eq!(&got, &expected);

        let strictest = d.matched.iter().map(|m| m.action).max();
        prop_assert_eq!(d.action, strictest.unwrap_or(Action::Audit));
        if let Some(w) = &d.winner {
            let first = d.matched.iter().find(|m| m.action == d.action).unwrap();
            prop_assert_eq!(&w.name, &first.name);
        } else {
            prop_assert!(d.matched.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The kernel fast path never decides less strictly than the policy: a kernel-decided
    /// entry equals the userspace decision for any argv, and a binary without an entry
    /// (and no fallback) is never judged stricter than audit.
    #[test]
    fn the_kernel_fast_path_agrees_with_the_userspace_judgment(
        rules in proptest::collection::vec(gen_rule(), 1..10),
        args in proptest::collection::vec(0..WORDS.len(), 0..4),
    ) {
        let dir = Scratch::new("policy-prop");
        let files: Vec<String> = ["alpha", "beta", "gamma"].iter().map(|n| dir.file(n)).collect();
        let mut text = to_toml(&rules);
        for (b, f) in BINARIES.iter().zip(&files) {
            text = text.replace(&format!("\"{b}\""), &format!("\"{f}\""));
        }
        let policy = Policy::parse(&text, "gen.toml").unwrap();
        let compiled = policy.compile();
        let mut argv = vec!["cmd".to_string()];
        argv.extend(args.iter().map(|w| WORDS[*w].to_string()));
        for file in &files {
            let d = policy.evaluate_exec(&ExecContext { argv: argv.clone(), ..exec(file, &[]) });
            let meta = std::fs::metadata(file).unwrap();
            let key = InodeKey { dev: kernel_dev(meta.dev()), ino: meta.ino() };
            match compiled.exec.iter().find(|e| e.key == key) {
                Some(e) if e.decided_by == DecidedBy::Kernel => {
                    // The kernel's allow and audit both run the exec; the rest must agree.
                    let run = |a: Action| a <= Action::Audit;
                    prop_assert!(e.action == d.action || (run(e.action) && run(d.action)),
                        "kernel {} vs userspace {} for {file}", e.action, d.action);
                }
                Some(e) => prop_assert_eq!(e.action, Action::Ask),
                None if compiled.exec_fallback.is_none() => {
                    prop_assert!(d.action <= Action::Audit, "{} would run unchecked", d.action);
                }
                None => {}
            }
        }
    }
}

/// `id_*` and `*.pem` in a literal directory are a name prefix and a name suffix scoped to
/// that directory, so `*` still stops at `/` in the kernel.
#[test]
fn name_globs_compile_to_kernel_name_rules() {
    let text = r#"version = 1
[[rule]]
name = "keys"
operation = "open"
path = ["/srv/keys/id_*", "/srv/keys/*.pem"]
action = "ask"
"#;
    let policy = Policy::parse(text, "p.toml").unwrap();
    let targets: Vec<(OpenTarget, DecidedBy)> = policy
        .compile()
        .open
        .iter()
        .map(|o| (o.target.clone(), o.decided_by))
        .collect();
    assert!(
        targets.contains(&(
            OpenTarget::Name {
                dir: NameDir::In("/srv/keys/".into()),
                name: NameMatch::StartsWith("id_".into())
            },
            DecidedBy::Kernel
        )),
        "{targets:?}"
    );
    assert!(
        targets.contains(&(
            OpenTarget::Name {
                dir: NameDir::In("/srv/keys/".into()),
                name: NameMatch::EndsWith(".pem".into())
            },
            DecidedBy::Kernel
        )),
        "{targets:?}"
    );
    // The userspace matcher agrees on what the prefix is for.
    let d = policy.evaluate_open(&OpenContext {
        agent: None,
        uid: None,
        path: "/srv/keys/id_ed25519".into(),
        access: AccessMode::READ,
        home: None,
    });
    assert_eq!(d.action, Action::Ask);
}

// ------------------------------------------------------------------ shadow mode

const SHADOW_POLICY: &str = r#"
version = 1
[[rule]]
name = "git-recorded"
operation = "exec"
binary = "/usr/bin/git"
action = "audit"
[[rule]]
name = "force-push-would-ask"
operation = "exec"
binary = "/usr/bin/git"
any_arg = ["--force"]
mode = "monitor"
action = "ask"
reason = "force pushes rewrite shared history"
controls = ["SOC2:CC8.1"]
[[rule]]
name = "shred-asks"
operation = "exec"
binary = "/usr/bin/shred"
action = "ask"
[[rule]]
name = "shred-would-deny"
operation = "exec"
binary = "/usr/bin/shred"
mode = "monitor"
action = "deny"
[[rule]]
name = "rm-denied"
operation = "exec"
binary = "/usr/bin/rm"
action = "deny"
[[rule]]
name = "rm-would-ask"
operation = "exec"
binary = "/usr/bin/rm"
mode = "monitor"
action = "ask"
[[test]]
name = "force push runs, and would have asked"
exec = ["git", "push", "--force"]
expect = "audit"
expect_shadow = "ask"
expect_rule = "git-recorded"
expect_matched = ["git-recorded", "force-push-would-ask"]
[[test]]
name = "shred is still held; the monitor rule would deny"
exec = ["shred", "x"]
expect = "ask"
expect_shadow = "deny"
"#;

#[test]
fn a_monitor_rule_is_reported_but_never_enforced() {
    let policy = Policy::parse(SHADOW_POLICY, "shadow.toml").unwrap();
    assert_eq!(policy.mode, Mode::Enforce);
    assert!(
        policy
            .rule_named("force-push-would-ask")
            .unwrap()
            .1
            .is_monitor()
    );

    let d = policy.evaluate_exec(&exec("/usr/bin/git", &["git", "push", "--force"]));
    assert_eq!(d.action, Action::Audit, "the monitor rule does not hold");
    assert_eq!(d.winner.as_ref().unwrap().name, "git-recorded");
    assert_eq!(
        d.matched
            .iter()
            .map(|m| (m.name.as_str(), m.monitor))
            .collect::<Vec<_>>(),
        [("git-recorded", false), ("force-push-would-ask", true)]
    );
    let shadow = d.shadow.as_ref().expect("the would-be ask is reported");
    assert_eq!(
        (
            shadow.action,
            shadow.winner.name.as_str(),
            shadow.winner.rule_id
        ),
        (Action::Ask, "force-push-would-ask", 2)
    );
    assert_eq!(shadow.reason, "force pushes rewrite shared history");
    assert_eq!(shadow.controls, ["SOC2:CC8.1"]);
    assert!(
        d.controls.is_empty(),
        "the enforced winner's tags, not the monitor rule's"
    );

    let d = policy.evaluate_exec(&exec("/usr/bin/git", &["git", "push"]));
    assert_eq!((d.action, d.shadow.is_none()), (Action::Audit, true));

    // Stricter enforced rules stay; a monitor rule only shows when it is stricter still.
    let d = policy.evaluate_exec(&exec("/usr/bin/shred", &["shred", "x"]));
    assert_eq!(d.action, Action::Ask);
    assert_eq!(d.shadow.as_ref().map(|s| s.action), Some(Action::Deny));
    let d = policy.evaluate_exec(&exec("/usr/bin/rm", &["rm", "x"]));
    assert_eq!((d.action, d.shadow.is_none()), (Action::Deny, true));

    // The daemon tells a monitor rule by its kernel id.
    assert_eq!(
        policy.monitor_rule(2).map(|(r, a)| (r.name.as_str(), a)),
        Some(("force-push-would-ask", Action::Ask))
    );
    assert!(policy.monitor_rule(1).is_none());

    let failures: Vec<_> = policy
        .run_tests()
        .into_iter()
        .filter_map(|r| r.failure)
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn a_monitor_policy_watches_every_rule_but_those_that_say_enforce() {
    let text = r#"
version = 1
mode = "monitor"
[[rule]]
name = "sudo-would-ask"
operation = "exec"
basename = "sudo"
action = "ask"
[[rule]]
name = "ssh-keys-denied"
operation = "open"
path = "~/.ssh/id_*"
mode = "enforce"
action = "deny"
[[rule]]
name = "env-would-ask"
operation = "open"
path = "**/.env"
action = "ask"
"#;
    let policy = Policy::parse(text, "monitor.toml").unwrap();
    assert_eq!(policy.mode, Mode::Monitor);
    let modes: Vec<Mode> = policy.rules.iter().map(|r| r.mode).collect();
    assert_eq!(modes, [Mode::Monitor, Mode::Enforce, Mode::Monitor]);

    let d = policy.evaluate_exec(&exec("/usr/bin/sudo", &["sudo", "id"]));
    assert_eq!(d.action, Action::Audit, "the default applies");
    assert!(d.winner.is_none());
    assert!(
        d.reason.starts_with("no enforced rule matched"),
        "{}",
        d.reason
    );
    assert_eq!(d.shadow.map(|s| s.action), Some(Action::Ask));

    let open = |path: &str| OpenContext {
        agent: None,
        uid: None,
        path: path.into(),
        access: AccessMode::READ,
        home: Some("/home/agent".into()),
    };
    assert_eq!(
        policy
            .evaluate_open(&open("/home/agent/.ssh/id_rsa"))
            .action,
        Action::Deny
    );
    let d = policy.evaluate_open(&open("/srv/app/.env"));
    assert_eq!(
        (d.action, d.shadow.map(|s| s.action)),
        (Action::Allow, Some(Action::Ask))
    );

    // Command-line rules are enforced even in a monitor policy.
    let mut policy = policy;
    policy.add_cli_rule(Action::Deny, "/usr/bin/sudo");
    let d = policy.evaluate_exec(&exec("/usr/bin/sudo", &["sudo", "id"]));
    assert_eq!((d.action, d.shadow.is_none()), (Action::Deny, true));

    // No monitor rule compiles to a fallback: nothing is held because of it.
    let compiled = policy.compile();
    assert!(compiled.exec_fallback.is_none(), "{compiled:?}");
    assert_eq!(compiled.monitored_in_userspace, ["sudo-would-ask"]);
}

#[test]
fn an_expect_shadow_case_fails_when_no_monitor_rule_would_be_stricter() {
    let text = format!(
        "{SHADOW_POLICY}\n[[test]]\nname = \"plain push\"\nexec = [\"git\", \"push\"]\nexpect = \"audit\"\nexpect_shadow = \"ask\"\n"
    );
    let policy = Policy::parse(&text, "shadow.toml").unwrap();
    let results = policy.run_tests();
    let last = results.last().unwrap();
    assert!(!last.passed);
    assert_eq!(
        last.failure.as_deref(),
        Some(
            "expected a would-be ask (monitor mode), but no monitor rule stricter than audit matched"
        )
    );
    // `expect` is the enforced action: expecting the would-be one fails.
    let text = SHADOW_POLICY.replace(
        "expect = \"audit\"\nexpect_shadow = \"ask\"",
        "expect = \"ask\"",
    );
    let policy = Policy::parse(&text, "shadow.toml").unwrap();
    assert_eq!(
        policy.run_tests()[0].failure.as_deref(),
        Some("expected ask, got audit")
    );
}

#[test]
fn monitor_rules_never_put_ask_or_deny_in_the_kernel() {
    let dir = Scratch::new("policy-shadow-compile");
    let git = dir.file("git");
    let shred = dir.file("shred");
    let rm = dir.file("rm");
    let curl = dir.file("curl");
    let keys = dir.0.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let keys = keys.to_str().unwrap();
    let text = SHADOW_POLICY
        .replace("/usr/bin/git", &git)
        .replace("/usr/bin/shred", &shred)
        .replace("/usr/bin/rm", &rm)
        + &format!(
            r#"
[[rule]]
name = "curl-would-deny"
operation = "exec"
binary = "{curl}"
mode = "monitor"
action = "deny"
[[rule]]
name = "keys-denied"
operation = "open"
path = "{keys}/**"
action = "deny"
[[rule]]
name = "one-key-would-ask"
operation = "open"
path = "{keys}/deploy.pem"
mode = "monitor"
action = "ask"
[[rule]]
name = "tokens-would-deny"
operation = "open"
path = "/srv/tokens/**"
mode = "monitor"
action = "deny"
"#
        );
    let policy = Policy::parse(&text, "p.toml").unwrap();
    let compiled = policy.compile();
    let entry = |path: &str| {
        let e = compiled.exec.iter().find(|e| e.path == path).unwrap();
        (
            e.action,
            e.decided_by,
            policy.rule(e.rule_id).unwrap().name.as_str(),
            e.shadow,
        )
    };
    assert_eq!(
        entry(&curl),
        (
            Action::Audit,
            DecidedBy::Kernel,
            "curl-would-deny",
            Some(Action::Deny)
        ),
        "only a monitor rule names curl: it runs and is reported under that rule"
    );
    assert_eq!(
        entry(&git),
        (
            Action::Audit,
            DecidedBy::Kernel,
            "force-push-would-ask",
            Some(Action::Ask)
        ),
        "the argv monitor rule tags git without holding it"
    );
    assert_eq!(
        entry(&shred),
        (Action::Ask, DecidedBy::Userspace, "shred-asks", None),
        "still held; userspace judges first so the would-be deny is seen"
    );
    assert_eq!(
        entry(&rm),
        (Action::Deny, DecidedBy::Kernel, "rm-denied", None),
        "an enforced rule at least as strict wins"
    );
    assert!(compiled.exec_fallback.is_none());

    let opens: Vec<(String, Action, Option<Action>)> = compiled
        .open
        .iter()
        .map(|o| {
            (
                policy.rule(o.rule_id).unwrap().name.clone(),
                o.action,
                o.shadow,
            )
        })
        .collect();
    assert_eq!(
        opens,
        [
            ("keys-denied".to_string(), Action::Deny, None),
            (
                "tokens-would-deny".to_string(),
                Action::Audit,
                Some(Action::Deny)
            ),
        ],
        "a monitor entry inside an enforced deny directory would hide it (longest match wins in the kernel), so it is left out"
    );
}

fn to_toml_with_modes(rules: &[GenRule], monitor: &[bool], keep_monitor: bool) -> String {
    let kept: Vec<(usize, GenRule, bool)> = rules
        .iter()
        .zip(monitor)
        .enumerate()
        .filter(|(_, (_, m))| keep_monitor || !**m)
        .map(|(i, (r, m))| (i, r.clone(), *m))
        .collect();
    let base = to_toml(&kept.iter().map(|(_, r, _)| r.clone()).collect::<Vec<_>>());
    // Rename rules back to their index in the full list and mark monitor ones.
    let mut out = String::new();
    let mut n = 0;
    for line in base.lines() {
        if let Some(rest) = line.strip_prefix("name = \"r") {
            let local: usize = rest.trim_end_matches('"').parse().unwrap();
            let (i, _, m) = &kept[local];
            out += &format!("name = \"r{i}\"\n");
            if *m {
                out += "mode = \"monitor\"\n";
            }
            n += 1;
        } else {
            out += line;
            out += "\n";
        }
    }
    assert_eq!(n, kept.len());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Monitor rules never change the enforced decision, and the shadow is there exactly
    /// when the strictest matching monitor rule is stricter than what is enforced.
    #[test]
    fn monitor_rules_never_change_the_enforced_action(
        rules in proptest::collection::vec(gen_rule(), 1..12),
        monitor in proptest::collection::vec(any::<bool>(), 12),
        binary in 0..BINARIES.len(),
        args in proptest::collection::vec(0..WORDS.len(), 0..4),
    ) {
        let with = Policy::parse(&to_toml_with_modes(&rules, &monitor, true), "with.toml").unwrap();
        let without = Policy::parse(&to_toml_with_modes(&rules, &monitor, false), "without.toml").unwrap();
        let mut argv = vec!["cmd".to_string()];
        argv.extend(args.iter().map(|w| WORDS[*w].to_string()));
        let ctx = ExecContext { argv, ..exec(BINARIES[binary], &[]) };
        let d = with.evaluate_exec(&ctx);
        let e = without.evaluate_exec(&ctx);
        prop_assert_eq!(d.action, e.action);
        prop_assert_eq!(d.winner.map(|w| w.name), e.winner.map(|w| w.name));

        let watched: Vec<&RuleMatch> = d.matched.iter().filter(|m| m.monitor).collect();
        let strictest = watched.iter().map(|m| m.action).max();
        match strictest {
            Some(a) if a > d.action => {
                let s = d.shadow.as_ref().expect("a stricter monitor rule matched");
                prop_assert_eq!(s.action, a);
                let first = watched.iter().find(|m| m.action == a).unwrap();
                prop_assert_eq!(&s.winner.name, &first.name);
            }
            _ => prop_assert!(d.shadow.is_none()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Adding monitor rules never changes what the kernel does to an exec: an entry that
    /// runs it still runs it (`audit` at most), one that holds still holds, a deny stays.
    #[test]
    fn monitor_rules_never_change_what_the_kernel_enforces(
        rules in proptest::collection::vec(gen_rule(), 1..10),
        monitor in proptest::collection::vec(any::<bool>(), 10),
    ) {
        let dir = Scratch::new("policy-shadow-prop");
        let files: Vec<String> = ["alpha", "beta", "gamma"].iter().map(|n| dir.file(n)).collect();
        let compile = |keep_monitor: bool| {
            let mut text = to_toml_with_modes(&rules, &monitor, keep_monitor);
            for (b, f) in BINARIES.iter().zip(&files) {
                text = text.replace(&format!("\"{b}\""), &format!("\"{f}\""));
            }
            let policy = Policy::parse(&text, "gen.toml").unwrap();
            let compiled = policy.compile();
            (policy, compiled)
        };
        let (policy, with) = compile(true);
        let (_, without) = compile(false);
        prop_assert_eq!(with.exec_fallback.is_some(), without.exec_fallback.is_some());
        // What the kernel does: runs (no entry, allow, audit), holds, or denies.
        let class = |c: &CompiledPolicy, key: InodeKey| match c.exec.iter().find(|e| e.key == key) {
            None => Action::Allow,
            Some(e) if e.action <= Action::Audit => Action::Allow,
            Some(e) => e.action,
        };
        for file in &files {
            let meta = std::fs::metadata(file).unwrap();
            let key = InodeKey { dev: kernel_dev(meta.dev()), ino: meta.ino() };
            prop_assert_eq!(class(&with, key), class(&without, key), "{}", file);
            if let Some(e) = with.exec.iter().find(|e| e.key == key && e.shadow.is_some()) {
                prop_assert_eq!(e.action, Action::Audit);
                prop_assert!(policy.monitor_rule(e.rule_id).is_some());
            }
        }
    }
}

// ------------------------------------------------------------------ policy tune

mod tune_scenario {
    use super::*;
    use crate::audit::{
        ApprovalAudit, ApprovalStep, AuditConfig, AuditEvent, AuditLog, AuditTarget, DecidedBy,
        DecisionAudit, NewEntry, Outcome, ProcessInfo, StoreOptions,
    };
    use crate::policy::tune::{SuggestionKind, TuneOptions, TuneReport, tune};

    /// 2025-06-15T15:06:40Z.
    const T0: u64 = 1_750_000_000_000;
    const MIN: u64 = 60_000;

    const POLICY: &str = r#"
version = 1
[[rule]]
name = "git-push-asks"
operation = "exec"
binary = "/usr/bin/git"
any_arg = "push"
action = "ask"
[[rule]]
name = "curl-would-ask"
operation = "exec"
binary = "/usr/bin/curl"
mode = "monitor"
action = "ask"
[[rule]]
name = "rm-denied"
operation = "exec"
binary = "/usr/bin/rm"
action = "deny"
[[rule]]
name = "never-used"
operation = "exec"
binary = "/usr/bin/nothing"
action = "deny"
"#;

    #[expect(
        clippy::too_many_arguments,
        reason = "a test builder: each argument is a field the scenario varies"
    )]
    fn decision(
        agent: &str,
        argv: &[&str],
        rule: &str,
        action: Action,
        outcome: Outcome,
        decided_by: DecidedBy,
        request: Option<u64>,
        monitor: bool,
    ) -> AuditEvent {
        AuditEvent::Decision(DecisionAudit {
            operation: Operation::Exec,
            process: ProcessInfo {
                agent: agent.into(),
                pid: 4242,
                binary: format!("/usr/bin/{}", argv[0]),
                argv: argv.iter().map(|a| a.to_string()).collect(),
                ..ProcessInfo::default()
            },
            files: Vec::new(),
            access: Vec::new(),
            matched_rules: vec![rule.into()],
            winner: Some(rule.into()),
            action,
            outcome,
            reason: format!("rule {rule}"),
            policy_version: "ab".repeat(32),
            controls: Vec::new(),
            decided_by,
            latency_us: None,
            request,
            monitor,
            recent: Vec::new(),
        })
    }

    fn approval(request: u64, step: ApprovalStep, by: Option<&str>) -> AuditEvent {
        AuditEvent::Approval(ApprovalAudit {
            request,
            step,
            operation: Operation::Exec,
            agent: "copilot".into(),
            pid: 4242,
            binary: "/usr/bin/git".into(),
            path: None,
            rule: Some("git-push-asks".into()),
            controls: Vec::new(),
            reviewers: vec!["alice".into()],
            channel: Some("cli".into()),
            by: by.map(str::to_string),
            detail: None,
        })
    }

    fn at(time_ms: u64, event: AuditEvent) -> NewEntry {
        NewEntry {
            time_ms,
            ref_seq: None,
            event,
        }
    }

    /// One ask of `git ARGS` by copilot at `t`, answered `answer` after it was requested.
    async fn ask(
        log: &AuditLog,
        request: u64,
        t: u64,
        argv: &[&str],
        answer: ApprovalStep,
        answer_ms: u64,
    ) {
        let held = log
            .append(at(
                t,
                decision(
                    "copilot",
                    argv,
                    "git-push-asks",
                    Action::Ask,
                    Outcome::Held,
                    DecidedBy::Policy,
                    Some(request),
                    false,
                ),
            ))
            .await
            .unwrap();
        let requested = t + 100;
        log.append(
            at(requested, approval(request, ApprovalStep::Requested, None)).follows(held.seq),
        )
        .await
        .unwrap();
        let answered = requested + answer_ms;
        let by = (answer != ApprovalStep::Expired).then_some("alice");
        log.append(at(answered, approval(request, answer, by)).follows(held.seq))
            .await
            .unwrap();
        let (outcome, decided_by) = match answer {
            ApprovalStep::Approved => (Outcome::Allowed, DecidedBy::Reviewer("alice".into())),
            ApprovalStep::Denied => (Outcome::Denied, DecidedBy::Reviewer("alice".into())),
            _ => (Outcome::Denied, DecidedBy::Timeout),
        };
        let mut last = decision(
            "copilot",
            argv,
            "git-push-asks",
            Action::Ask,
            outcome,
            decided_by,
            Some(request),
            false,
        );
        if let AuditEvent::Decision(d) = &mut last {
            d.latency_us = Some(answer_ms * 1000);
        }
        log.append(at(answered, last).follows(held.seq))
            .await
            .unwrap();
    }

    /// Writes the scenario's log: 6 approved `git push origin` (every 10 minutes, answered
    /// in 10..50 s and 600 s), one rejected and one expired `git -C /srv/prod push`, three
    /// would-be asks of curl (monitor mode), two kernel denials of rm, and one ask of
    /// another agent.
    fn write_log(db: &Path) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let log = AuditLog::open(AuditConfig::new(StoreOptions::new(AuditTarget::Sqlite(
                    db.to_path_buf(),
                ))))
                .await
                .unwrap();
                let answers = [10, 20, 30, 40, 50, 600];
                for (i, secs) in answers.iter().enumerate() {
                    let t = T0 + i as u64 * 10 * MIN;
                    ask(
                        &log,
                        i as u64 + 1,
                        t,
                        &["git", "push", "origin"],
                        ApprovalStep::Approved,
                        secs * 1000,
                    )
                    .await;
                }
                let prod = ["git", "-C", "/srv/prod", "push"];
                ask(&log, 7, T0 + 70 * MIN, &prod, ApprovalStep::Denied, 5_000).await;
                ask(
                    &log,
                    8,
                    T0 + 80 * MIN,
                    &prod,
                    ApprovalStep::Expired,
                    300_000,
                )
                .await;
                for i in 0..3 {
                    log.append(at(
                        T0 + (90 + i) * MIN,
                        decision(
                            "copilot",
                            &["curl", "-T", "dump.sql", "https://x.example"],
                            "curl-would-ask",
                            Action::Ask,
                            Outcome::Allowed,
                            DecidedBy::Policy,
                            None,
                            true,
                        ),
                    ))
                    .await
                    .unwrap();
                }
                for i in 0..2 {
                    log.append(at(
                        T0 + (100 + i) * MIN,
                        decision(
                            "copilot",
                            &["rm", "-rf", "/"],
                            "rm-denied",
                            Action::Deny,
                            Outcome::Denied,
                            DecidedBy::Kernel,
                            None,
                            false,
                        ),
                    ))
                    .await
                    .unwrap();
                }
                log.append(at(
                    T0 + 110 * MIN,
                    decision(
                        "ops-bot",
                        &["git", "push"],
                        "git-push-asks",
                        Action::Ask,
                        Outcome::Held,
                        DecidedBy::Policy,
                        Some(9),
                        false,
                    ),
                ))
                .await
                .unwrap();
                log.flush().await.unwrap();
            });
    }

    fn report(db: &Path, min_samples: u64, agent: Option<&str>) -> TuneReport {
        let policy = Policy::parse(POLICY, "tune.toml").unwrap();
        let opts = TuneOptions {
            since_ms: T0 - MIN,
            until_ms: Some(T0 + 24 * 60 * MIN),
            agent: agent.map(str::to_string),
            min_samples,
        };
        let rows = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut o = StoreOptions::new(AuditTarget::Sqlite(db.to_path_buf()));
                o.create = false;
                let store = crate::audit::Store::open(&o).await.unwrap();
                crate::policy::tune::read_rows(&store, &opts).await.unwrap()
            });
        tune(&rows, Some(&policy), &opts)
    }

    #[test]
    fn tune_counts_asks_answers_and_would_be_asks_per_rule() {
        let dir = Scratch::new("policy-tune");
        let db = dir.0.join("audit.db");
        write_log(&db);
        let r = report(&db, 5, Some("copilot"));
        assert_eq!((r.decisions, r.requests), (13, 8));
        let names: Vec<&str> = r.rules.iter().map(|s| s.rule.as_str()).collect();
        assert_eq!(
            names,
            ["git-push-asks", "curl-would-ask", "rm-denied", "never-used"]
        );
        let git = &r.rules[0];
        assert_eq!(
            (git.fired, git.won, git.asked, git.denied),
            (8, 8, 8, 0),
            "an answer is not a second firing"
        );
        assert_eq!((git.approved, git.rejected, git.expired), (6, 1, 1));
        // Answer times of approvals and the rejection: 5, 10, 20, 30, 40, 50, 600 s.
        assert_eq!(git.answers_timed, 7);
        assert_eq!(git.answer_median_ms, Some(30_000));
        assert_eq!(git.answer_p90_ms, Some(50_000));

        let curl = &r.rules[1];
        assert_eq!(curl.mode, Some(Mode::Monitor));
        assert_eq!(
            (
                curl.fired,
                curl.won,
                curl.would_ask,
                curl.would_deny,
                curl.approved
            ),
            (3, 0, 3, 0, 0),
            "monitor mode holds nothing and asks nobody"
        );
        let rm = &r.rules[2];
        assert_eq!((rm.fired, rm.won, rm.denied), (2, 2, 2));
        assert_eq!(r.rules[3].fired, 0);

        let kinds: Vec<(&str, SuggestionKind)> = r
            .suggestions
            .iter()
            .map(|s| (s.rule.as_str(), s.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("git-push-asks", SuggestionKind::Narrow),
                ("git-push-asks", SuggestionKind::Grant),
                ("curl-would-ask", SuggestionKind::Monitor),
                ("never-used", SuggestionKind::NeverFired),
            ]
        );
        let narrow = &r.suggestions[0];
        assert_eq!(narrow.samples, 6);
        assert_eq!(
            narrow.toml.as_deref(),
            Some(
                "# in [[rule]] name = \"git-push-asks\": stop asking for `git push`\nargv_not_regex = [\"^push( |$)\"]"
            )
        );
        // The pasted line parses, and the narrowed rule no longer asks for it.
        let narrowed = POLICY.replace(
            "any_arg = \"push\"\n",
            &format!(
                "any_arg = \"push\"\n{}\n",
                narrow.toml.as_ref().unwrap().lines().nth(1).unwrap()
            ),
        );
        let p = Policy::parse(&narrowed, "narrowed.toml").unwrap();
        let d = p.evaluate_exec(&exec("/usr/bin/git", &["git", "push", "origin"]));
        assert_eq!(d.action, Action::Audit);
        let d = p.evaluate_exec(&exec("/usr/bin/git", &["git", "-C", "/srv/prod", "push"]));
        assert_eq!(d.action, Action::Ask);

        let grant = &r.suggestions[1];
        assert_eq!(grant.samples, 6);
        assert_eq!(
            grant.toml.as_deref(),
            Some(
                "# in [[rule]] name = \"git-push-asks\" (/usr/bin/git)\ngrant = { scope = \"exact-argv\", max_uses = 6, max_ttl = \"51m\" }"
            )
        );
        assert!(
            r.suggestions[2].summary.contains("would have asked 3")
                && r.suggestions[2].summary.contains("fewer than 5 samples"),
            "{}",
            r.suggestions[2].summary
        );

        // Below the evidence threshold, nothing is suggested for the asks.
        let r = report(&db, 7, Some("copilot"));
        assert!(
            r.suggestions.iter().all(|s| s.rule != "git-push-asks"),
            "{:?}",
            r.suggestions
        );
        // Every agent: ops-bot's unanswered ask counts too.
        let r = report(&db, 5, None);
        assert_eq!((r.rules[0].fired, r.rules[0].asked), (9, 9));
        assert_eq!(r.rules[0].approved, 6);
    }

    #[test]
    fn tune_through_the_cli_prints_json_with_the_numbers() {
        use clap::Parser as _;

        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: crate::policy::cli::PolicyCommand,
        }

        let dir = Scratch::new("policy-tune-cli");
        let db = dir.0.join("audit.db");
        write_log(&db);
        let policy = dir.0.join("policy.toml");
        std::fs::write(&policy, POLICY).unwrap();
        let cli = Cli::try_parse_from([
            "policy",
            "tune",
            "--db",
            db.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--since",
            "2025-06-15",
            "--until",
            "2025-06-16",
            "--agent",
            "copilot",
            "--json",
        ])
        .unwrap();
        let crate::policy::cli::PolicyCommand::Tune(args) = cli.command else {
            panic!("not tune")
        };
        let text = crate::policy::tune::output(&args, T0 + 60 * 60 * MIN).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["decisions"], 13);
        let git = &v["rules"][0];
        assert_eq!(git["rule"], "git-push-asks");
        assert_eq!(
            (
                git["asked"].as_u64(),
                git["approved"].as_u64(),
                git["answer_median_ms"].as_u64()
            ),
            (Some(8), Some(6), Some(30_000))
        );
        assert_eq!(v["rules"][1]["would_ask"], 3);
        assert_eq!(v["rules"][1]["mode"], "monitor");
        assert_eq!(v["suggestions"][0]["kind"], "narrow");

        // The table names the same numbers.
        let mut args = args;
        args.json = false;
        let table = crate::policy::tune::output(&args, T0).unwrap();
        let git_line = table
            .lines()
            .find(|l| l.starts_with("git-push-asks "))
            .unwrap();
        let cells: Vec<&str> = git_line.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "git-push-asks",
                "enforce",
                "8",
                "8",
                "8",
                "0",
                "0",
                "0",
                "6",
                "1",
                "1",
                "30s",
                "50s"
            ]
        );

        // A missing log is an error, never a new empty one.
        let missing = dir.0.join("nope.db");
        args.db.db = Some(missing.clone());
        assert!(crate::policy::tune::output(&args, T0).is_err());
        assert!(!missing.exists());
    }
}

/// The kernel sees a script's interpreter when the program is about to run, so a rule that
/// holds or refuses a script also holds its interpreter's execs for the daemon to judge.
#[test]
fn a_rule_on_a_script_holds_its_interpreter_for_userspace() {
    let dir = Scratch::new("policy-script");
    let script = dir.0.join("pg_dump");
    std::fs::write(&script, "#!/bin/sh -e\nexec true\n").unwrap();
    let plain = dir.file("plain");
    let text = format!(
        "version = 1\n[[rule]]\nname = \"dumps\"\noperation = \"exec\"\nbinary = \"{}\"\naction = \"deny\"\n[[rule]]\nname = \"plain\"\noperation = \"exec\"\nbinary = \"{plain}\"\naction = \"deny\"\n",
        script.display()
    );
    let compiled = Policy::parse(&text, "p.toml").unwrap().compile();
    let sh = std::fs::metadata(std::fs::canonicalize("/bin/sh").unwrap()).unwrap();
    let sh_key = InodeKey {
        dev: kernel_dev(sh.dev()),
        ino: sh.ino(),
    };
    let entry = compiled
        .exec
        .iter()
        .find(|e| e.key == sh_key)
        .expect("an interpreter entry");
    assert_eq!(
        (entry.action, entry.decided_by, entry.rule_id),
        (Action::Ask, DecidedBy::Userspace, 1)
    );
    let script_entry = compiled
        .exec
        .iter()
        .find(|e| e.path == script.to_str().unwrap())
        .unwrap();
    assert_eq!(
        (script_entry.action, script_entry.decided_by),
        (Action::Deny, DecidedBy::Kernel),
        "the lsm backend still refuses the script itself"
    );
    assert_eq!(compiled.exec.len(), 3, "{:?}", compiled.exec);
    assert_eq!(compiled.interpreted.len(), 1, "not the ELF-looking file");
    assert!(
        compiled
            .warnings()
            .iter()
            .any(|w| w.contains("names the script"))
    );
}
