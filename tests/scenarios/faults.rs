//! Fault injection (DESIGN §7 with the daemon, its channels and its event stream broken on
//! purpose): the daemon SIGKILLed and SIGSTOPped at random points of an agent workload, the
//! ring buffer flooded by an agent while the daemon is stopped (the hold whose event cannot
//! reach the daemon is killed), a flood by a non-agent, and webhook receivers that are down,
//! never answer, answer 500 or answer garbage. The expected outcome every time: nothing an
//! agent does escapes, nothing is lost without being counted, non-agents are unaffected.
//! Other faults have their own tests: a full audit disk (`audit_log::scenario_30_*`), reload
//! storms (`reload::an_exec_storm_during_100_reloads_never_gets_through`), an exhausted
//! tracking map (`scoping::scenario_24_*`), an agent's flood with the daemon running
//! (`audit_log::scenario_23_*`).

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use interceptor_integration::{
    Backend, Daemon, Rule, Spawned, TestDir, counter, expected_backend, fate, probe_bin,
    probe_value, proc_state,
};
use serde_json::Value;

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn value(out: &str, key: &str) -> u64 {
    probe_value(out, key)
        .unwrap_or_else(|| panic!("no {key}= in {out}"))
        .parse()
        .unwrap()
}

/// xorshift64*: the fault schedule is random, and its seed is printed so a failing run can
/// be told apart from a passing one.
struct Random(u64);

impl Random {
    fn from_clock() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Random(nanos | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// Starts an agent that waits for `gate` and then runs `args` (so it registers while the
/// daemon is still answering); returns once the daemon has seen it start.
fn gated_agent(daemon: &Daemon, name: &str, gate: &Path, args: &[&str]) -> Spawned {
    let mut argv = vec!["after", gate.to_str().unwrap()];
    argv.extend_from_slice(args);
    let agent = Spawned::start(daemon.agent(name, &probe_bin(), &argv));
    let pid = agent.pid();
    daemon.wait_event("the gated agent's start", |e| {
        e["pid"] == pid && e["agent"] == name
    });
    agent
}

#[test]
fn the_daemon_killed_and_stopped_at_random_points_lets_no_agent_exec_escape() {
    let dir = TestDir::new("fault-chaos");
    let denied = dir.probe_copy("denied-tool");
    let inspected = dir.probe_copy("inspected-tool");
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "never"
operation = "exec"
binary = "{}"
action = "deny"

# An argv rule the kernel cannot judge: every exec of the tool is held for the daemon,
# which finds no match and lets it run under the defaults.
[[rule]]
name = "inspect"
operation = "exec"
binary = "{}"
argv_regex = "--never-given"
action = "deny"
"#,
            denied.display(),
            inspected.display()
        ),
    )
    .unwrap();
    // Down for longer than the heartbeat timeout, the kernel refuses what needs the daemon.
    let mut daemon = Daemon::start_with(&dir, &[], &["--heartbeat-timeout-ms", "1000"]);
    let (gate, stop) = (dir.join("gate"), dir.join("stop"));
    let escaped = dir.join("escaped");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let storm = |what: &Path, args: &[&str]| {
        let mut argv = vec!["storm-until".to_string(), path(&stop), path(what)];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    };
    let denied_storm = storm(&denied, &["touch", &path(&escaped)]);
    let inspected_storm = storm(&inspected, &["exit", "0"]);
    let a_denied = gated_agent(&daemon, "chaos-bot", &gate, &as_strs(&denied_storm));
    let a_inspected = gated_agent(&daemon, "chaos-bot", &gate, &as_strs(&inspected_storm));
    let untracked = Spawned::start({
        let mut c = Command::new(probe_bin());
        c.args(["after", &path(&gate)]).args(&inspected_storm);
        c
    });
    std::fs::write(&gate, b"go").unwrap();

    let mut random = Random::from_clock();
    println!("fault schedule seed {:#x}", random.0);
    // Each restart re-attaches the programs, which patches kernel text (the tracepoints'
    // static calls). Under QEMU's software emulation that patching, racing exits on the
    // other vCPU, once ended in an `Oops: int3` in do_exit (not seen on the host): in the VM
    // one fault of the four, at a random point, is a kill; on the host each may be.
    let kill_at = random.below(4);
    let mut schedule = Vec::new();
    for step in 0..4 {
        std::thread::sleep(random.millis(200, 700));
        let kill = match expected_backend() {
            Backend::Lsm => step == kill_at,
            Backend::Tracepoint => random.below(2) == 1,
        };
        if !kill {
            let held_for = random.millis(100, 1500);
            daemon.signal(libc::SIGSTOP);
            std::thread::sleep(held_for);
            daemon.signal(libc::SIGCONT);
            schedule.push(format!("SIGSTOP {held_for:?}"));
        } else {
            let down_for = random.millis(100, 2500);
            daemon.kill9();
            std::thread::sleep(down_for);
            daemon.restart();
            schedule.push(format!("SIGKILL, down {down_for:?}"));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&stop, b"stop").unwrap();
    println!("faults: {schedule:?}");

    let (_, out) = a_denied.finish();
    assert_eq!(value(&out, "storm-ran"), 0, "a denied exec ran: {out}");
    assert!(value(&out, "storm-refused") > 0, "{out}");
    assert!(!escaped.exists(), "the denied tool ran");
    let (_, agent_out) = a_inspected.finish();
    let ran = value(&agent_out, "storm-ran");
    let (_, out) = untracked.finish();
    assert_eq!(
        value(&out, "storm-refused"),
        0,
        "a non-agent was refused: {out}"
    );
    assert!(value(&out, "storm-ran") > 0, "{out}");

    // Every inspected exec that ran was decided, and its decision committed, first.
    let allowed = || {
        // Decisions on the inspected tool's execs, whichever rule (or default) won.
        let rows: Vec<Value> = daemon
            .audit_rows(&["--agent", "chaos-bot", "--kind", "decision"])
            .into_iter()
            .filter(|r| r["event"]["process"]["argv"][0] == inspected.to_str().unwrap())
            .collect();
        let outcomes: std::collections::BTreeMap<String, u64> =
            rows.iter().fold(Default::default(), |mut m, r| {
                *m.entry(r["outcome"].to_string()).or_default() += 1;
                m
            });
        (outcomes.get("\"allowed\"").copied().unwrap_or(0), outcomes)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while allowed().0 < ran && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (decided, outcomes) = allowed();
    println!("inspected execs: {ran} ran, decisions {outcomes:?}; {agent_out}");
    assert!(
        decided >= ran,
        "{ran} inspected execs ran, {decided} allowed decisions {outcomes:?}"
    );
    let never = daemon.audit_rows(&["--kind", "decision", "--rule", "never"]);
    assert!(never.iter().all(|r| r["outcome"] == "denied"), "{never:#?}");
    // The chain survives the kills.
    daemon.assert_audit_verifies();
}

#[test]
fn an_agent_flooding_the_ring_buffer_of_a_stopped_daemon_cannot_slip_a_hold_through() {
    // The ring holds about 300 exec records (1 MiB, ~3.2 KiB each); the flood is twice that.
    let execs = match expected_backend() {
        Backend::Lsm => 700,
        Backend::Tracepoint => 2000,
    };
    let dir = TestDir::new("fault-ring");
    let busy = dir.probe_copy("busy-tool");
    let held = dir.probe_copy("held-tool");
    // The daemon stays "up" for the kernel while stopped: only the ring fills.
    let daemon = Daemon::start_with(
        &dir,
        &[Rule::HoldExec(&held)],
        &["--heartbeat-timeout-ms", "300000"],
    );
    let gate = dir.join("gate");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (n, file) = (execs.to_string(), dir.join("data"));
    std::fs::write(&file, b"x").unwrap();
    // Every exec is the busy tool except the last, the held one.
    let flood = [
        "flood",
        &n,
        "0",
        &n,
        &path(&busy),
        &path(&held),
        &path(&file),
        &path(&file),
    ];
    let agent = gated_agent(&daemon, "flood-bot", &gate, &flood);
    let before = counter(&daemon.json(&["status", "--json"]), "event_dropped");

    daemon.signal(libc::SIGSTOP);
    std::fs::write(&gate, b"go").unwrap();
    // A non-agent runs the held tool while nobody reads the ring: not held, not slowed.
    let marker = dir.join("untracked-ran");
    let status = Command::new(&held)
        .args(["touch", &path(&marker)])
        .status()
        .unwrap();
    assert!(status.success() && marker.exists());
    let (status, out) = agent.finish();
    daemon.signal(libc::SIGCONT);
    assert_eq!(fate(status), "exit:0", "{out}");
    assert_eq!(value(&out, "flood-exec-ok"), execs - 1, "{out}");
    assert_eq!(
        value(&out, "flood-sensitive-exec-refused"),
        1,
        "the hold nobody could be told about was killed, not left running: {out}"
    );
    assert_eq!(value(&out, "flood-other"), 0, "{out}");

    let list = daemon.json(&["approvals", "list", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    // Nothing lost uncounted: every exec is a row or a counted drop.
    let expected = 1 + execs;
    let (rows, dropped) = daemon.wait_for("every exec recorded or counted", || {
        let status = daemon.json(&["status", "--json"]);
        let dropped =
            counter(&status, "event_dropped") - before + status["audit"]["lost"].as_u64()?;
        let rows = daemon
            .audit_rows(&["--agent", "flood-bot", "--kind", "exec"])
            .len() as u64;
        (rows + dropped >= expected).then_some((rows, dropped))
    });
    println!("ring flood: {rows} exec rows, {dropped} counted dropped, of {expected}");
    assert!(dropped > 0, "the ring never filled: {rows} rows");
    assert!(rows <= expected);
}

#[test]
fn a_non_agent_flood_puts_nothing_in_the_ring_and_holds_nothing() {
    let execs = match expected_backend() {
        Backend::Lsm => 300,
        Backend::Tracepoint => 2000,
    };
    let dir = TestDir::new("fault-untracked-flood");
    let held = dir.probe_copy("held-tool");
    let daemon = Daemon::start(&dir, &[Rule::HoldExec(&held)]);
    let marker = dir.join("approved");
    let agent =
        Spawned::start(daemon.agent("waiting-bot", &held, &["touch", marker.to_str().unwrap()]));
    let request = daemon.wait_pending(agent.pid());
    let status = daemon.json(&["status", "--json"]);
    let rows_before = daemon.audit_rows(&["--kind", "exec"]).len();
    let dropped_before = counter(&status, "event_dropped");

    // The held tool itself, and opens, as fast as a non-agent can.
    let file = dir.join("data");
    std::fs::write(&file, b"x").unwrap();
    let (n, opens) = (execs.to_string(), (execs * 5).to_string());
    let (f, h) = (file.to_str().unwrap(), held.to_str().unwrap());
    let (status, out) = Spawned::start({
        let mut c = Command::new(probe_bin());
        c.args(["flood", &n, &opens, "1000000", h, h, f, f]);
        c
    })
    .finish();
    assert_eq!(fate(status), "exit:0", "{out}");
    assert_eq!(value(&out, "flood-exec-ok"), execs, "none held: {out}");
    assert_eq!(value(&out, "flood-open-ok"), execs * 5, "{out}");

    let status = daemon.json(&["status", "--json"]);
    assert_eq!(
        counter(&status, "event_dropped"),
        dropped_before,
        "{status}"
    );
    assert_eq!(
        daemon.audit_rows(&["--kind", "exec"]).len(),
        rows_before,
        "a non-agent's execs are not the daemon's business"
    );
    assert_eq!(proc_state(agent.pid()), Some('T'), "the agent's hold stays");
    daemon.json(&["approvals", "approve", &request["id"].to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "exit:0");
    assert!(marker.exists());
}

/// A webhook receiver that misbehaves in one way, counting the connections it got.
struct BadReceiver {
    url: String,
    connections: Arc<AtomicUsize>,
}

#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Nothing listens: the connection is refused.
    Down,
    /// Reads the request and never answers.
    Silent,
    /// `500 Internal Server Error`, every time.
    ServerError,
    /// Bytes that are not HTTP, then the connection closes.
    Garbage,
}

impl BadReceiver {
    fn start(how: Misbehaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        if let Misbehaviour::Down = how {
            drop(listener);
            return BadReceiver { url, connections };
        }
        let count = connections.clone();
        std::thread::spawn(move || {
            let mut silent = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                stream
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut request = [0u8; 16 * 1024];
                let _ = stream.read(&mut request);
                match how {
                    Misbehaviour::Silent => silent.push(stream),
                    Misbehaviour::ServerError => {
                        let _ = stream.write_all(
                            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        );
                    }
                    Misbehaviour::Garbage => {
                        let _ = stream.write_all(b"\x00\x01 this is not HTTP \xff\r\n\r\n");
                    }
                    Misbehaviour::Down => unreachable!(),
                }
            }
        });
        BadReceiver { url, connections }
    }
}

#[test]
fn webhook_receivers_down_silent_failing_or_garbled_release_no_hold() {
    let dir = TestDir::new("fault-webhooks");
    let tool = dir.probe_copy("deploy-tool");
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "version = 1\n[[rule]]\nname = \"deploys\"\noperation = \"exec\"\nbinary = \"{}\"\naction = \"ask\"\ntimeout = \"10m\"\n",
            tool.display()
        ),
    )
    .unwrap();
    let secret = dir.secret("hook.secret", "a-webhook-secret-of-32-bytes-xxx");
    let receivers: Vec<(&str, Misbehaviour, BadReceiver)> = [
        ("down", Misbehaviour::Down),
        ("silent", Misbehaviour::Silent),
        ("error", Misbehaviour::ServerError),
        ("garbage", Misbehaviour::Garbage),
    ]
    .into_iter()
    .map(|(name, how)| (name, how, BadReceiver::start(how)))
    .collect();
    let mut config = String::from(
        "version = 1\n\n[[reviewer]]\nname = \"root\"\nuids = [0]\n\n[delivery]\nattempts = 3\nfirst_backoff = \"50ms\"\nmax_backoff = \"100ms\"\nattempt_timeout = \"700ms\"\n",
    );
    for (name, _, r) in &receivers {
        config.push_str(&format!(
            "\n[[channel]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\n",
            r.url,
            secret.display()
        ));
    }
    let config_path = dir.join("approvals.toml");
    std::fs::write(&config_path, config).unwrap();
    let daemon = Daemon::start_with(&dir, &[], &["--approvals", config_path.to_str().unwrap()]);

    let marker = dir.join("deployed");
    let agent =
        Spawned::start(daemon.agent("deploy-bot", &tool, &["touch", marker.to_str().unwrap()]));
    let id = daemon.wait_pending(agent.pid())["id"].as_u64().unwrap();
    // One `notified` row per channel, each saying why it was not delivered.
    let rows = daemon.wait_for("a notified row from every channel", || {
        let rows = daemon.approval_rows(id, 1);
        let notified: Vec<Value> = rows
            .into_iter()
            .filter(|r| r["outcome"] == "notified")
            .collect();
        (notified.len() == receivers.len()).then_some(notified)
    });
    for (name, how, receiver) in &receivers {
        let row = rows
            .iter()
            .find(|r| r["event"]["channel"] == *name)
            .unwrap_or_else(|| panic!("no notified row for {name}: {rows:#?}"));
        let detail = row["event"]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("not delivered") && detail.contains("3 attempts"),
            "{name} ({how:?}): {detail}"
        );
        assert!(!detail.contains(&receiver.url), "URLs stay out of the log");
        let expected = match how {
            Misbehaviour::Down => 0,
            _ => 3,
        };
        assert_eq!(
            receiver.connections.load(Ordering::SeqCst),
            expected,
            "{name}: {detail}"
        );
        println!("{name}: {detail}");
    }
    assert_eq!(
        proc_state(agent.pid()),
        Some('T'),
        "failed channels release nothing"
    );
    assert!(!marker.exists());
    // The request is still answerable where a reviewer is.
    daemon.json(&["approvals", "approve", &id.to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "exit:0");
    assert!(marker.exists());
}
