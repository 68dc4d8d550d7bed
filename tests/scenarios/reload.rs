//! Policy reload: SIGHUP or a change of the file swaps the policy with no moment without
//! enforcement; a bad file is rejected with file:line:col and the policy in force stays.

use std::{path::Path, time::Duration};

use interceptor_integration::{
    Backend, Daemon, Spawned, TestDir, expected_backend, fate, probe_bin, probe_value,
};

fn deny_policy(binaries: &[(&str, &Path)]) -> String {
    let mut text = String::from("version = 1\n");
    for (name, binary) in binaries {
        text.push_str(&format!(
            "\n[[rule]]\nname = \"{name}\"\noperation = \"exec\"\nbinary = \"{}\"\naction = \"deny\"\n",
            binary.display()
        ));
    }
    text
}

fn refused() -> &'static str {
    match expected_backend() {
        Backend::Lsm => "spawn-errno:1",
        Backend::Tracepoint => "signal:9",
    }
}

/// The fate of an agent's exec of `tool`, as the probe reports it.
fn run_tool(daemon: &Daemon, tool: &Path) -> String {
    let (status, out) = Spawned::start(daemon.agent(
        "reload-bot",
        &probe_bin(),
        &["spawn", tool.to_str().unwrap(), "exit", "0"],
    ))
    .finish();
    assert_eq!(fate(status), "exit:0", "{out}");
    probe_value(&out, "child").unwrap().to_string()
}

fn sighup(daemon: &Daemon) {
    let pid = daemon.json(&["status", "--json"])["daemon_pid"]
        .as_i64()
        .unwrap() as i32;
    // SAFETY: signalling the daemon we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

fn wait_version_change(daemon: &Daemon, old: &serde_json::Value) -> serde_json::Value {
    daemon.wait_for("the reloaded policy", || {
        let status = daemon.json(&["status", "--json"]);
        (status["policy_version"] != *old).then_some(status)
    })
}

#[test]
fn reload_swaps_the_policy_and_keeps_it_when_the_file_is_bad() {
    let dir = TestDir::new("reload");
    let (a, b) = (dir.probe_copy("tool-a"), dir.probe_copy("tool-b"));
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, deny_policy(&[("no-a", &a)])).unwrap();
    let daemon = Daemon::start(&dir, &[]);
    assert_eq!(run_tool(&daemon, &a), refused());
    assert_eq!(run_tool(&daemon, &b), "exit:0");

    let v1 = daemon.json(&["status", "--json"])["policy_version"].clone();
    std::fs::write(&policy, deny_policy(&[("no-b", &b)])).unwrap();
    sighup(&daemon);
    let status = wait_version_change(&daemon, &v1);
    assert!(
        status["last_reload"].as_str().unwrap().starts_with("ok"),
        "{status}"
    );
    assert_eq!(run_tool(&daemon, &a), "exit:0", "the old rule is gone");
    assert_eq!(run_tool(&daemon, &b), refused(), "the new rule is in force");

    // A bad file, noticed by the watcher (no signal): rejected with its position.
    let v2 = status["policy_version"].clone();
    std::fs::write(
        &policy,
        format!("{}frobnicate = true\n", deny_policy(&[("no-a", &a)])),
    )
    .unwrap();
    let status = daemon.wait_for("the rejected reload", || {
        let status = daemon.json(&["status", "--json"]);
        status["last_reload"]
            .as_str()
            .is_some_and(|r| r.starts_with("rejected"))
            .then_some(status)
    });
    let note = status["last_reload"].as_str().unwrap();
    assert!(
        note.contains("policy.toml:8:"),
        "file:line:col of the unknown field: {note}"
    );
    assert!(note.contains("frobnicate"), "{note}");
    assert_eq!(status["policy_version"], v2, "the previous policy stays");
    // The kernel still holds the previous policy's entry, and only it.
    let shown = daemon.json(&["policy", "show", "--running", "--json"]);
    assert_eq!(shown["policy_version"], v2, "{shown}");
    let rules: Vec<&str> = shown["exec"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["rule"].as_str())
        .collect();
    assert_eq!(rules, ["no-b"], "{shown}");
    assert_eq!(run_tool(&daemon, &b), refused());
    assert_eq!(run_tool(&daemon, &a), "exit:0");
}

#[test]
fn an_exec_storm_during_100_reloads_never_gets_through() {
    let dir = TestDir::new("reload-storm");
    let (denied, churn) = (dir.probe_copy("denied-tool"), dir.probe_copy("churn-tool"));
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, deny_policy(&[("no-denied", &denied)])).unwrap();
    let daemon = Daemon::start(&dir, &[]);
    let stop = dir.join("stop");
    let storm = Spawned::start(daemon.agent(
        "storm-bot",
        &probe_bin(),
        &[
            "storm-until",
            stop.to_str().unwrap(),
            denied.to_str().unwrap(),
            "exit",
            "0",
        ],
    ));

    let reloads = |daemon: &Daemon| daemon.log_text().matches("policy reloaded").count();
    for i in 0..100 {
        // Every version denies the stormed binary; the rest of the policy churns around it.
        let mut rules = vec![(format!("churn-{i}"), churn.as_path())];
        if i % 2 == 0 {
            rules.insert(0, ("no-denied".to_string(), denied.as_path()));
        } else {
            rules.push(("no-denied-again".to_string(), denied.as_path()));
        }
        let rules: Vec<(&str, &Path)> = rules.iter().map(|(n, p)| (n.as_str(), *p)).collect();
        std::fs::write(&policy, deny_policy(&rules)).unwrap();
        let before = reloads(&daemon);
        sighup(&daemon);
        daemon.wait_for("a reload", || (reloads(&daemon) > before).then_some(()));
    }
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&stop, b"stop").unwrap();
    let (status, out) = storm.finish();
    assert_eq!(fate(status), "exit:0");
    let ran: u64 = probe_value(&out, "storm-ran").unwrap().parse().unwrap();
    let refused: u64 = probe_value(&out, "storm-refused").unwrap().parse().unwrap();
    assert!(reloads(&daemon) >= 100, "{} reloads", reloads(&daemon));
    assert!(refused > 0, "the storm ran during the reloads: {out}");
    assert_eq!(ran, 0, "an exec got through during a reload: {out}");
}

/// Under systemd (`Type=notify`): READY once the daemon answers, WATCHDOG from its main loop
/// while the heartbeat reaches the kernel, RELOADING then READY around a reload, STOPPING on
/// SIGTERM — in sd_notify(3)'s format, on the socket named by `$NOTIFY_SOCKET`.
#[test]
fn systemd_hears_ready_watchdog_reload_and_stop() {
    use std::os::unix::net::UnixDatagram;
    let dir = TestDir::new("notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 1024];
        let n = socket.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    // The first notification that is not a watchdog ping.
    let next_state = || loop {
        let msg = recv();
        if msg != "WATCHDOG=1" {
            break msg;
        }
    };
    let tool = dir.probe_copy("tool-a");
    let mut daemon = Daemon::start_with_env(
        &dir,
        &[],
        &[],
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            ("WATCHDOG_USEC", std::ffi::OsStr::new("10000000")),
        ],
    );
    // Daemon::start returned once the control socket answered: READY was sent before that.
    let backend = match expected_backend() {
        Backend::Lsm => "lsm",
        Backend::Tracepoint => "tracepoint",
    };
    let version = daemon.json(&["status", "--json"])["policy_version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        recv(),
        format!("READY=1\nSTATUS=enforcing with the {backend} backend, policy {version}")
    );
    assert_eq!(recv(), "WATCHDOG=1", "the main loop pets the watchdog");

    let old = daemon.json(&["status", "--json"])["policy_version"].clone();
    std::fs::write(dir.join("policy.toml"), deny_policy(&[("no-a", &tool)])).unwrap();
    sighup(&daemon);
    let new = wait_version_change(&daemon, &old)["policy_version"]
        .as_str()
        .unwrap()
        .to_string();
    let reloading = next_state();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(
        next_state(),
        format!("READY=1\nSTATUS=enforcing with the {backend} backend, policy {new}")
    );

    let status = daemon.terminate();
    assert!(status.success(), "{status:?}\n{}", daemon.log_text());
    assert!(next_state().starts_with("STOPPING=1\n"));
}
