//! `interceptor doctor` reports what this host can enforce, from checks rather than
//! assumptions, and agrees with the daemon that runs here.

use interceptor_integration::{Backend, Daemon, TestDir, expected_backend};

#[test]
fn doctor_reports_the_backend_its_programs_and_guarantees() {
    let dir = TestDir::new("doctor");
    let daemon = Daemon::start(&dir, &[]);
    let pin_dir = daemon.pin_dir.to_str().unwrap().to_string();
    let out = daemon.cli(&["doctor", "--json", "--pin-dir", &pin_dir]);
    assert!(
        out.status.success(),
        "doctor exits 0 where a backend can run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("doctor --json is JSON");

    let want = match expected_backend() {
        Backend::Lsm => "lsm",
        Backend::Tracepoint => "tracepoint",
    };
    assert_eq!(report["backend"], want, "{report:#}");
    assert_eq!(report["running_daemon"], want);
    assert_eq!(report["btf_ok"], true);
    let programs = report["programs"]
        .as_array()
        .expect("programs probed as root");
    assert_eq!(programs.len(), 17, "{report:#}");
    for p in programs {
        // Both backends attach the tracepoints and the cgroup programs.
        let should_load = p["kind"] == "tp_btf" || p["kind"] == "cgroup_sock_addr" || want == "lsm";
        assert_eq!(p["loads"], should_load, "{p}");
        assert_eq!(p["error"].is_null(), should_load, "a refusal says why: {p}");
    }
    if want == "lsm" {
        assert_eq!(report["bpf_lsm_active"], true, "{report:#}");
    }
    let status = daemon.json(&["status", "--json"]);
    assert_eq!(
        report["guarantees"], status["guarantees"],
        "doctor and the daemon state the same guarantees"
    );
    let pins: Vec<&str> = report["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(pins.iter().any(|p| p.ends_with("/TRACKED")), "{pins:?}");
    let links = pins.iter().filter(|p| p.contains("/links/")).count();
    let attached = programs.iter().filter(|p| p["loads"] == true).count();
    assert_eq!(
        links, attached,
        "one pinned link per program this backend attaches: {pins:?}"
    );
    // Probing loaded programs in a scratch directory and removed it.
    let leftovers: Vec<_> = std::fs::read_dir("/sys/fs/bpf")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("interceptor-probe-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
