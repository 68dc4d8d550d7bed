//! Argv-level policy decided in userspace while the kernel holds the exec: the same binary
//! runs, asks a human, or dies before its first instruction depending on its arguments;
//! each exec is judged on its own (per command, not per session).

use interceptor_integration::{
    Backend, Daemon, Spawned, TestDir, expected_backend, fate, probe_bin, probe_value, proc_state,
};

#[test]
fn the_policy_decides_each_exec_by_its_arguments() {
    let dir = TestDir::new("policy-argv");
    let tool = dir.probe_copy("deploy-tool");
    let tool_path = tool.to_str().unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "prod-deploys-ask"
operation = "exec"
binary = "{tool_path}"
argv_regex = "prod"
action = "ask"
reason = "production changes need a human"
controls = ["SOC2:CC8.1"]

[[rule]]
name = "no-force"
operation = "exec"
binary = "{tool_path}"
any_arg = "--force"
action = "deny"
reason = "forced deploys are never allowed"
controls = ["SOC2:CC8.1"]
"#
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let marker = |name: &str| dir.join(name);

    // No matching argument: the kernel held it, the policy allowed it, it ran; no human asked.
    let staging = marker("staging");
    let run = |args: &[&str]| Spawned::start(daemon.agent("deploy-bot", &tool, args));
    let (status, _) = run(&["touch", staging.to_str().unwrap(), "staging"]).finish();
    assert_eq!(fate(status), "exit:0");
    assert!(staging.exists());

    // --force: denied by policy, killed before its first instruction.
    let forced = marker("forced");
    let (status, _) = run(&["touch", forced.to_str().unwrap(), "prod", "--force"]).finish();
    assert_eq!(fate(status), "signal:9", "deny wins over ask");
    assert!(!forced.exists());

    // prod: a human is asked, with the winning rule and its reason.
    let prod = marker("prod");
    let agent = run(&["touch", prod.to_str().unwrap(), "prod"]);
    let request = daemon.wait_pending(agent.pid());
    assert_eq!(request["rule"], "prod-deploys-ask", "{request}");
    assert_eq!(request["reason"], "production changes need a human");
    assert_eq!(proc_state(agent.pid()), Some('T'));
    assert!(!prod.exists());
    daemon.json(&["approvals", "approve", &request["id"].to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "exit:0");
    assert!(prod.exists());

    let pending = daemon.json(&["approvals", "list", "--json"]);
    assert_eq!(
        pending.as_array().map(Vec::len),
        Some(0),
        "only the prod exec asked: {pending}"
    );
}

/// Rules the kernel cannot match by inode — a program named by basename or by glob, and a
/// restrictive default — are still enforced: every agent exec that no inode entry names is
/// held and judged in userspace with the whole policy. Copies and renames of a binary do
/// not escape a basename rule; processes outside the agent are never held.
#[test]
fn basename_glob_and_default_rules_are_enforced_on_every_agent_exec() {
    let dir = TestDir::new("policy-fallback");
    for sub in ["a", "b", "stage-1"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let shredder = dir.probe_copy("a/shredder");
    let shredder_copy = dir.probe_copy("b/shredder");
    let deployer = dir.probe_copy("stage-1/deployer");
    let harmless = dir.probe_copy("harmless");
    let secret_tool = dir.probe_copy("secret-tool");
    let root = dir.join("");
    let root = root.to_str().unwrap().trim_end_matches('/');
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[defaults]
exec = "audit"

[[rule]]
name = "no-shredders"
operation = "exec"
basename = "shredder"
action = "deny"
reason = "no agent shreds anything, whatever the copy is called"

[[rule]]
name = "stage-deploys-ask"
operation = "exec"
binary_glob = "{root}/stage-*/deployer"
action = "ask"

[[rule]]
name = "secret-tool-denied-by-inode"
operation = "exec"
binary = "{secret}"
action = "deny"
"#,
            secret = secret_tool.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let log = daemon.wait_log("held for the daemon");
    assert!(
        log.contains("no-shredders") && log.contains("stage-deploys-ask"),
        "the startup log names the rules judged in userspace: {log}"
    );
    // What the kernel holds, read back from the maps by the running daemon.
    let shown = daemon.json(&["policy", "show", "--running", "--json"]);
    assert_eq!(shown["exec_fallback"], true, "{shown}");
    let entries = shown["exec"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{shown}");
    assert_eq!(entries[0]["path"], secret_tool.to_str().unwrap());
    assert_eq!(entries[0]["verdict"], "deny");
    assert_eq!(entries[0]["rule"], "secret-tool-denied-by-inode");
    let run = |program: &std::path::Path, marker: &str| {
        let path = dir.join(marker);
        let spawned = Spawned::start(daemon.agent(
            "fallback-bot",
            program,
            &["touch", path.to_str().unwrap()],
        ));
        (spawned, path)
    };

    // The basename rule: the binary and a copy of it elsewhere, killed before running.
    for program in [&shredder, &shredder_copy] {
        let (agent, marker) = run(program, "shredded");
        assert_eq!(fate(agent.finish().0), "signal:9", "{}", program.display());
        assert!(!marker.exists(), "{} ran", program.display());
    }
    let denied = daemon.wait_audit(
        "the userspace deny by basename",
        &["--rule", "no-shredders", "--kind", "decision"],
        |r| r["outcome"] == "denied",
    );
    assert_eq!(denied["decided_by"], "policy", "{denied}");
    assert_eq!(denied["agent"], "fallback-bot");

    // The glob rule: held for a human; a reviewer's deny kills it.
    let (agent, marker) = run(&deployer, "deployed");
    let request = daemon.wait_pending(agent.pid());
    assert_eq!(request["rule"], "stage-deploys-ask", "{request}");
    assert_eq!(proc_state(agent.pid()), Some('T'));
    daemon.json(&["approvals", "deny", &request["id"].to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "signal:9");
    assert!(!marker.exists());

    // Unnamed: judged by the default (audit) and run.
    let (agent, marker) = run(&harmless, "harmless-ran");
    assert_eq!(fate(agent.finish().0), "exit:0");
    assert!(marker.exists());

    // An inode rule still decides in the kernel.
    let (agent, marker) = run(&secret_tool, "secret-ran");
    assert_ne!(fate(agent.finish().0), "exit:0");
    assert!(!marker.exists());

    // Outside the agent, the same shredder runs untouched.
    let outside = dir.join("outside");
    let status = std::process::Command::new(&shredder)
        .args(["touch", outside.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(
        status.success() && outside.exists(),
        "a non-agent process was refused"
    );
}

/// Bypass-shaped commands are judged on the exec the kernel resolves, not on the command
/// line an agent typed: through `env`, inside `sh -c`, by a symlink under another name, with
/// the argument quoted or split by the shell. Argv rules see the arguments as the program
/// gets them.
#[test]
fn bypass_shaped_commands_are_judged_on_the_exec_the_kernel_resolves() {
    let dir = TestDir::new("policy-bypass");
    let tool = dir.probe_copy("pg_dump");
    let tool_path = tool.to_str().unwrap().to_string();
    let link = dir.join("innocent-name");
    std::os::unix::fs::symlink(&tool, &link).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "prod-dumps"
operation = "exec"
binary = "{tool_path}"
any_arg = "prod"
action = "deny"
reason = "no production dumps by agents"
"#
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let marker = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let run = |program: &str, args: &[&str]| {
        Spawned::start(daemon.agent("dump-bot", std::path::Path::new(program), args)).finish()
    };

    let denied = [
        (
            "direct",
            tool_path.clone(),
            vec!["touch".to_string(), marker("m-direct"), "prod".into()],
        ),
        (
            "env",
            "/usr/bin/env".into(),
            vec![
                tool_path.clone(),
                "touch".into(),
                marker("m-env"),
                "prod".into(),
            ],
        ),
        (
            "symlink",
            link.to_str().unwrap().into(),
            vec!["touch".into(), marker("m-symlink"), "prod".into()],
        ),
        (
            "sh -c, quoted and split",
            "/bin/sh".into(),
            vec![
                "-c".into(),
                format!("{tool_path} touch {} 'pr'\"od\"", marker("m-sh")),
            ],
        ),
    ];
    for (how, program, args) in &denied {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, out) = run(program, &args);
        assert_ne!(fate(status), "exit:0", "{how}: {out}");
    }
    for m in ["m-direct", "m-env", "m-symlink", "m-sh"] {
        assert!(!dir.join(m).exists(), "{m}: the denied exec ran");
    }
    // The shell's quoting joined `'pr'"od"` into the one argument the rule names.
    let row = daemon.wait_audit(
        "the denial of the exec inside sh -c",
        &["--rule", "prod-dumps", "--decision", "denied"],
        |r| r["event"]["process"]["argv"][2] == marker("m-sh").as_str(),
    );
    assert_eq!(row["event"]["process"]["argv"][3], "prod", "{row}");
    assert_eq!(
        row["event"]["process"]["binary"],
        tool_path.as_str(),
        "{row}"
    );

    // One argument with a space in it is not the argument `prod`; other arguments run.
    for (how, program, args) in [
        (
            "staging",
            tool_path.clone(),
            vec!["touch".to_string(), marker("m-staging"), "staging".into()],
        ),
        (
            "sh -c, one quoted argument",
            "/bin/sh".into(),
            vec![
                "-c".into(),
                format!("{tool_path} touch {} 'prod db'", marker("m-one-arg")),
            ],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, out) = run(&program, &args);
        assert_eq!(fate(status), "exit:0", "{how}: {out}");
    }
    assert!(dir.join("m-staging").exists());
    assert!(dir.join("m-one-arg").exists());
}

/// A script is judged as itself, not as its interpreter (Debian's `pg_dump` is a Perl
/// wrapper): the kernel finds the script's own entry, and the daemon judges the script's
/// arguments at their positions (without the interpreter in front).
#[test]
fn a_script_is_judged_by_its_own_rules_and_arguments() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TestDir::new("policy-script");
    let write_script = |name: &str| {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\necho ran > \"$1\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let dump = write_script("pg_dump");
    let wipe = write_script("wipe");
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "prod-dumps"
operation = "exec"
binary = "{dump}"
arg = [{{ index = 2, glob = "prod" }}]
action = "deny"

[[rule]]
name = "no-wipe"
operation = "exec"
binary = "{wipe}"
action = "deny"
"#,
            dump = dump.display(),
            wipe = wipe.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let run = |program: &std::path::Path, marker: &str, arg: &str| {
        let m = dir.join(marker);
        let (status, out) =
            Spawned::start(daemon.agent("script-bot", program, &[m.to_str().unwrap(), arg]))
                .finish();
        (fate(status), out, m.exists())
    };
    let (fate_prod, out, ran) = run(&dump, "m-prod", "prod");
    assert!(
        fate_prod != "exit:0" && !ran,
        "prod dump: {fate_prod} {out}"
    );
    let (fate_staging, out, ran) = run(&dump, "m-staging", "staging");
    assert!(
        fate_staging == "exit:0" && ran,
        "staging dump: {fate_staging} {out}"
    );
    let (fate_wipe, out, ran) = run(&wipe, "m-wipe", "x");
    assert!(fate_wipe != "exit:0" && !ran, "wipe: {fate_wipe} {out}");
    for rule in ["prod-dumps", "no-wipe"] {
        let row = daemon.wait_audit(
            &format!("the denial by {rule}"),
            &["--rule", rule, "--decision", "denied"],
            |_| true,
        );
        assert_eq!(row["agent"], "script-bot", "{row}");
    }
}

/// Scenario 25: LD_PRELOAD, LD_AUDIT or BASH_ENV set for a program that is otherwise
/// allowed: the env rule makes the kernel hold each exec of it, the daemon reads the new
/// program's environment while it is stopped, and the injected one dies before its first
/// instruction; the same program without them runs.
#[test]
fn scenario_25_loader_injection_into_an_allowed_program_is_denied() {
    let dir = TestDir::new("policy-env");
    let tool = dir.probe_copy("git");
    let tool_path = tool.to_str().unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "no-loader-injection"
operation = "exec"
binary = "{tool_path}"
env = ["LD_PRELOAD", "LD_AUDIT", "BASH_ENV"]
action = "deny"
reason = "an injected library or startup script changes what a reviewed program does"
"#
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let run = |marker: &std::path::Path, env: Option<(&str, &str)>| {
        let mut cmd = daemon.agent("env-bot", &tool, &["touch", marker.to_str().unwrap()]);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        Spawned::start(cmd).finish().0
    };
    let clean = dir.join("clean");
    assert_eq!(fate(run(&clean, None)), "exit:0");
    assert!(clean.exists(), "without injection the program runs");
    for (i, var) in ["LD_PRELOAD", "LD_AUDIT", "BASH_ENV"]
        .into_iter()
        .enumerate()
    {
        let marker = dir.join(&format!("injected-{i}"));
        let status = run(&marker, Some((var, "/tmp/interceptor-test-inject.so")));
        assert_eq!(fate(status), "signal:9", "{var} set: killed before it runs");
        assert!(!marker.exists(), "{var} set: the program never ran");
    }
    let rows = daemon.audit_rows(&["--rule", "no-loader-injection", "--kind", "decision"]);
    let denied = rows.iter().filter(|r| r["outcome"] == "denied").count();
    assert_eq!(denied, 3, "one denial per injected exec: {rows:#?}");
    assert!(
        rows.iter().all(|r| r["decided_by"] == "policy"),
        "judged in userspace from the held task's environment: {rows:#?}"
    );
}

/// Scenario 17: deputies run work outside the agent's process tree (a service manager, a
/// scheduler, the local sshd, the container daemon), or plant it for later (a shell startup
/// file). The shipped default policy asks a human before each of them, and the denied ones
/// never run. The deputies' clients are probe copies put where the policy names them
/// (`/usr/bin/...` is not there in the VM), and `~` is a home in the test directory.
#[test]
fn scenario_17_deputies_in_the_default_policy_are_held_for_a_human() {
    let dir = TestDir::new("policy-deputies");
    let home = dir.join("home");
    std::fs::create_dir(&home).unwrap();
    let bashrc = home.join(".bashrc");
    std::fs::write(&bashrc, b"# untouched\n").unwrap();
    let mut policy = include_str!("../../policies/default.toml").to_string();
    let mut clients = Vec::new();
    for name in ["systemd-run", "at", "crontab", "ssh", "docker"] {
        let copy = dir.probe_copy(name);
        let listed = format!("\"/usr/bin/{name}\"");
        assert!(
            policy.contains(&listed),
            "the default policy names {listed}"
        );
        policy = policy.replace(&listed, &format!("\"{}\"", copy.display()));
        clients.push((name, copy));
    }
    policy.push_str(&format!(
        "\n[[agent]]\nname = \"deputy-bot\"\nhome = \"{}\"\n",
        home.display()
    ));
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let client = |name: &str| &clients.iter().find(|(n, _)| *n == name).unwrap().1;

    for (name, rule, args) in [
        (
            "systemd-run",
            "deferred-execution",
            vec!["--user", "--unit=x"],
        ),
        ("at", "deferred-execution", vec!["now"]),
        ("crontab", "crontab-edit", vec!["/tmp/evil.cron"]),
        ("ssh", "ssh-to-this-host", vec!["localhost", "id"]),
        ("docker", "container-runtime-clients", vec!["run", "alpine"]),
    ] {
        let marker = dir.join(&format!("ran-{name}"));
        let mut argv = vec!["touch", marker.to_str().unwrap()];
        argv.extend(args);
        let agent = Spawned::start(daemon.agent("deputy-bot", client(name), &argv));
        let pid = agent.pid();
        let request = daemon.wait_pending(pid);
        assert_eq!(request["rule"], rule, "{name}: {request}");
        assert_eq!(proc_state(pid), Some('T'), "{name} is held");
        assert!(!marker.exists(), "{name} ran before an answer");
        let id = request["id"].to_string();
        daemon.json(&["approvals", "deny", &id, "--json"]);
        let (status, _) = agent.finish();
        assert_eq!(fate(status), "signal:9", "{name}");
        assert!(!marker.exists(), "the denied {name} never ran");
        let rows = daemon.audit_rows(&["--kind", "decision", "--rule", rule]);
        let outcomes: Vec<&str> = rows
            .iter()
            .filter(|r| r["pid"] == pid)
            .filter_map(|r| r["outcome"].as_str())
            .collect();
        assert_eq!(outcomes, ["held", "denied"], "{name}: {rows:#?}");
    }

    // Listing the crontab is not a deputy: it runs at once (the probe refuses `-l` as a
    // command, exit 2), recorded under the default.
    let (status, _) =
        Spawned::start(daemon.agent("deputy-bot", client("crontab"), &["-l"])).finish();
    assert_eq!(fate(status), "exit:2");
    let edits = daemon.audit_rows(&["--kind", "decision", "--rule", "crontab-edit"]);
    assert_eq!(edits.len(), 2, "only the earlier held + denied: {edits:#?}");

    // Writing a startup file: asked, so refused until a grant (lsm); opens are not
    // checked on the tracepoint backend, which says so.
    let (_, out) = Spawned::start(daemon.agent(
        "deputy-bot",
        &probe_bin(),
        &["open", bashrc.to_str().unwrap(), "w"],
    ))
    .finish();
    match expected_backend() {
        Backend::Lsm => {
            assert_eq!(probe_value(&out, "open"), Some("errno:13"), "{out}");
            let request = daemon.wait_for("the asked .bashrc write", || {
                let list = daemon.json(&["approvals", "list", "--json"]);
                list.as_array()?
                    .iter()
                    .find(|r| r["rule"] == "shell-startup-files")
                    .cloned()
            });
            assert_eq!(request["filename"], bashrc.to_str().unwrap(), "{request}");
            assert_eq!(request["access"][0], "write", "{request}");
        }
        Backend::Tracepoint => {
            assert_eq!(probe_value(&out, "open"), Some("ok"), "{out}");
            assert!(daemon.states("NOT guaranteed: agents' opens are not checked"));
        }
    }
    assert_eq!(std::fs::read(&bashrc).unwrap(), b"# untouched\n");

    // Outside any agent the same clients run unasked.
    let free = dir.join("free");
    let (status, _) = Spawned::start({
        let mut c = std::process::Command::new(client("systemd-run"));
        c.args(["touch", free.to_str().unwrap()]);
        c
    })
    .finish();
    assert_eq!(fate(status), "exit:0");
    assert!(free.exists());
}
