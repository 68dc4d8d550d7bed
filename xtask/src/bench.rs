//! `cargo xtask bench`: benchmarks, reported against the design's targets (DESIGN.md §9,
//! docs/benchmarks.md). A missed target is reported, never turned into a failure: only a
//! bench that could not run exits non-zero.
//!
//! - `bench kernel`: what the kernel programs cost other processes and agents. The workload
//!   and the in-place driver are `interceptor-bench` (tests/src/bin/interceptor-bench/);
//!   it runs as root on the host (the backend this kernel allows: tracepoint here) and as
//!   /bench/run inside the BPF-LSM VM (lsm backend). This module builds it, runs it in
//!   either place, and turns its per-round lines into medians, ratios and a verdict table.
//! - `bench audit`: the audit-log pipeline bench, `interceptor/examples/audit_bench.rs`.
//! - `bench policy`: the policy engine bench, `interceptor/examples/policy_bench.rs`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::artifacts::{self, BenchArtifacts};
use crate::util::{self, describe};
use crate::vm::{self, BenchInputs, VmOptions};
use crate::{VmArgs, Workspace};

/// `cargo xtask bench [COMMAND]`: without a command, the whole side-by-side suite.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    all: crate::compare::AllArgs,
}

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Exec and open throughput with the daemon loaded vs not, agent fast path, held-exec
    /// latency; on the host (as root) and in the BPF-LSM VM.
    ///
    /// Example: sudo cargo xtask bench kernel --host --rounds 9
    Kernel(KernelArgs),
    /// Approval latencies on this host (as root): hold -> webhook delivered and approval
    /// POST -> task resumed, p50/p99, against the targets (p99 < 50 ms and < 10 ms).
    ///
    /// Example: sudo cargo xtask bench approvals --n 200
    Approvals {
        /// Held execs to notify and approve.
        #[arg(long, default_value_t = 200)]
        n: usize,
    },
    /// The policy engine (interceptor/examples/policy_bench.rs): parse and compile time,
    /// and userspace matcher evaluations/s, on default.toml and on a 1,000-rule policy.
    ///
    /// Example: cargo xtask bench policy
    Policy,
    /// The audit-log pipeline bench (interceptor/examples/audit_bench.rs); arguments are
    /// passed through.
    // Every argument, --help included, belongs to the example.
    #[command(disable_help_flag = true)]
    Audit {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct KernelArgs {
    /// Run on this machine (as root). Without --host or --vm: both.
    #[arg(long)]
    host: bool,
    /// Run inside the QEMU VM (lsm backend). Without --host or --vm: both.
    #[arg(long)]
    vm: bool,
    /// Rounds (each: daemon not loaded, then loaded, or the other way round).
    /// Default: 15 on the host, 5 in the VM.
    #[arg(long)]
    rounds: Option<usize>,
    /// Execs per exec measurement. Default: 2000 on the host, 200 in the VM.
    #[arg(long)]
    exec_n: Option<usize>,
    /// Opens per open measurement. Default: 200000 on the host, 20000 in the VM.
    #[arg(long)]
    open_n: Option<usize>,
    /// Held execs per round. Default: 300 on the host, 50 in the VM.
    #[arg(long)]
    held_n: Option<usize>,
    /// Do not run the workloads and the daemon as SCHED_FIFO (see docs/benchmarks.md).
    #[arg(long)]
    no_realtime: bool,
    /// Skip the session after the rounds that runs each workload once more with the
    /// kernel's BPF run-time statistics on (calls and ns per call of each program: what
    /// costs what, and the "bpf est." column).
    #[arg(long)]
    no_prog_stats: bool,
    /// Print one JSON document on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    vm_args: VmArgs,
}

pub fn run(ws: &Workspace, args: BenchArgs) -> Result<()> {
    let Some(command) = args.command else {
        return crate::compare::all(ws, args.all);
    };
    match command {
        BenchCommand::Kernel(args) => kernel(ws, args),
        BenchCommand::Audit { args } => audit(ws, args),
        BenchCommand::Approvals { n } => approvals(ws, n),
        BenchCommand::Policy => {
            let mut cmd = example(ws, "policy_bench");
            println!("xtask: {}", describe(&cmd));
            util::run_checked(&mut cmd)
        }
    }
}

/// `cargo run --release -p interceptor --example NAME`.
pub(crate) fn example(ws: &Workspace, name: &str) -> Command {
    let mut cmd = ws.cargo();
    cmd.args(["run", "--release", "-p", "interceptor", "--example", name]);
    cmd
}

/// The approvals bench: the daemon with a webhook channel to a local receiver, a reviewer
/// answering every request through its review link at once.
fn approvals(ws: &Workspace, n: usize) -> Result<()> {
    if !util::is_root() {
        bail!("the approvals bench must run as root (the daemon loads eBPF programs)");
    }
    let built = artifacts::build_approval_bench(ws)?;
    let mut cmd = Command::new(&built.bench);
    cmd.arg(n.to_string())
        .env("INTERCEPTOR_BIN", &built.daemon)
        .env("INTERCEPTOR_PROBE", &built.probe)
        .env("INTERCEPTOR_EXPECT_BACKEND", "tracepoint");
    println!("xtask: {}", describe(&cmd));
    util::run_checked(&mut cmd)
}

/// The audit bench, with a throwaway PostgreSQL server (fsync on) for its PostgreSQL rows.
fn audit(ws: &Workspace, args: Vec<String>) -> Result<()> {
    let pg = crate::postgres::PgServer::start(ws, true)?;
    let mut cmd = example(ws, "audit_bench");
    cmd.env("INTERCEPTOR_BENCH_PG_URL", &pg.url)
        .arg("--")
        .args(args);
    util::run_checked(&mut cmd)
}

/// Where a kernel bench ran.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Host,
    Vm,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::Host => "host",
            Place::Vm => "vm",
        }
    }
}

/// Sizes of one run; the VM's are smaller (TCG runs ~20x slower).
struct Sizes {
    rounds: usize,
    exec_n: usize,
    open_n: usize,
    held_n: usize,
}

impl Sizes {
    fn for_place(args: &KernelArgs, place: Place) -> Self {
        let (rounds, exec_n, open_n, held_n) = match place {
            Place::Host => (15, 2000, 200_000, 300),
            Place::Vm => (5, 200, 20_000, 50),
        };
        Sizes {
            rounds: args.rounds.unwrap_or(rounds),
            exec_n: args.exec_n.unwrap_or(exec_n),
            open_n: args.open_n.unwrap_or(open_n),
            held_n: args.held_n.unwrap_or(held_n),
        }
    }

    fn suite_args(&self, realtime: bool, prog_stats: bool) -> Vec<String> {
        let mut v = vec![
            "--rounds".to_string(),
            self.rounds.to_string(),
            "--exec-n".into(),
            self.exec_n.to_string(),
            "--open-n".into(),
            self.open_n.to_string(),
            "--held-n".into(),
            self.held_n.to_string(),
        ];
        if realtime {
            v.push("--realtime".into());
        }
        if prog_stats {
            v.push("--prog-stats".into());
        }
        v
    }
}

fn kernel(ws: &Workspace, args: KernelArgs) -> Result<()> {
    let places: Vec<Place> = match (args.host, args.vm) {
        (true, false) => vec![Place::Host],
        (false, true) => vec![Place::Vm],
        _ => vec![Place::Host, Place::Vm],
    };
    // Checked before building: the host bench loads eBPF programs.
    if places.contains(&Place::Host) && !util::is_root() {
        bail!(
            "the host kernel bench must run as root (it loads eBPF programs); try `sudo -E cargo xtask bench kernel`, or --vm alone"
        );
    }
    // With --json, stdout carries the document only; everything else (cargo, QEMU relay,
    // progress, the tables) goes to stderr.
    let redirect = args.json.then(StdoutToStderr::start).transpose()?;
    let built = artifacts::build_bench(ws)?;
    let mut reports = Vec::new();
    for place in places {
        let sizes = Sizes::for_place(&args, place);
        let realtime = !args.no_realtime;
        println!("==== bench kernel: {} ====", place.name());
        let lines = match place {
            Place::Host => run_host(
                &built,
                "suite",
                &sizes.suite_args(realtime, !args.no_prog_stats),
            )?,
            Place::Vm => run_vm(
                ws,
                &built,
                "suite",
                &sizes.suite_args(realtime, !args.no_prog_stats),
                args.vm_args,
            )?,
        };
        let report = analyze(place, &lines)?;
        print_table(&report);
        reports.push(report);
    }
    drop(redirect);
    if args.json {
        let doc: serde_json::Map<String, Value> = reports
            .iter()
            .map(|r| (r.place.name().to_string(), r.to_json()))
            .collect();
        println!("{}", serde_json::to_string_pretty(&Value::Object(doc))?);
    }
    Ok(())
}

/// Runs `interceptor-bench MODE --daemon ... ARGS` on this machine and returns its lines.
pub(crate) fn run_host(
    built: &BenchArtifacts,
    mode: &str,
    suite_args: &[String],
) -> Result<Vec<String>> {
    let mut cmd = Command::new(&built.bench);
    cmd.arg(mode)
        .arg("--daemon")
        .arg(&built.daemon)
        .args(suite_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    println!("xtask: {}", describe(&cmd));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe(&cmd)))?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the bench output")?;
        println!("{line}");
        lines.push(line);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("the host bench failed ({status})");
    }
    Ok(lines)
}

/// Runs `interceptor-bench MODE` inside the BPF-LSM VM and returns its lines.
pub(crate) fn run_vm(
    ws: &Workspace,
    built: &BenchArtifacts,
    mode: &str,
    suite_args: &[String],
    vm_args: VmArgs,
) -> Result<Vec<String>> {
    let command = format!(
        "exec /bin/interceptor-bench {mode} --daemon /bin/interceptor --expect-backend lsm {}",
        suite_args.join(" ")
    );
    let inputs = BenchInputs {
        daemon: built.daemon.clone(),
        files: vec![built.bench.clone()],
        command,
    };
    let opts = VmOptions {
        test_timeout_secs: vm_args.vm_test_timeout,
        suite_timeout_secs: vm_args.vm_timeout,
        keep_tree: false,
    };
    let outcome = vm::run_bench(ws, &inputs, opts)?;
    let mut lines = outcome.lines;
    if let Some(secs) = outcome.boot_secs {
        lines.push(format!("{INFO}{}", json!({ "vm_boot_secs": secs })));
    }
    match outcome.exit {
        Some(0) => Ok(lines),
        Some(rc) => bail!("the bench inside the VM failed (exit {rc})"),
        None => bail!("the VM stopped before the bench finished"),
    }
}

// ---------------------------------------------------------------------------------------
// analysis

pub(crate) const RESULT: &str = "INTERCEPTOR-BENCH ";
pub(crate) const INFO: &str = "INTERCEPTOR-BENCH-INFO ";
pub(crate) const END: &str = "INTERCEPTOR-BENCH-END ok";
const PROG: &str = "INTERCEPTOR-BENCH-PROG ";

/// One comparison against a target.
struct Row {
    name: &'static str,
    /// Median over rounds: not loaded, loaded (ops/s), or none for latencies.
    baseline: Option<f64>,
    value: f64,
    /// Median of the per-round ratios (value / baseline), and their spread.
    ratio: Option<(f64, f64, f64)>,
    /// With program statistics: the ratio if our programs' run time were the only cost,
    /// base / (base + program ns per operation). A lower bound on the cost (an upper bound
    /// on the ratio), but precise where other tenants make the measured ratio noisy.
    bpf_estimate: Option<f64>,
    target: &'static str,
    met: Option<bool>,
    note: Option<&'static str>,
}

struct Report {
    place: Place,
    info: serde_json::Map<String, Value>,
    rows: Vec<Row>,
    held: Value,
    warnings: Vec<String>,
    raw: Vec<Value>,
    /// With --prog-stats: per workload, what each kernel program cost.
    prog_stats: Vec<Value>,
}

impl Report {
    fn backend(&self) -> &str {
        self.info
            .get("backend")
            .and_then(Value::as_str)
            .unwrap_or("?")
    }

    fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "not_loaded": r.baseline,
                    "value": r.value,
                    "ratio": r.ratio.map(|x| x.0),
                    "ratio_min": r.ratio.map(|x| x.1),
                    "ratio_max": r.ratio.map(|x| x.2),
                    "bpf_time_estimate": r.bpf_estimate,
                    "target": r.target,
                    "met": r.met,
                    "note": r.note,
                })
            })
            .collect();
        json!({
            "info": self.info,
            "rows": rows,
            "held_exec": self.held,
            "warnings": self.warnings,
            "measurements": self.raw,
            "prog_stats": self.prog_stats,
        })
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "median of nothing");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn analyze(place: Place, lines: &[String]) -> Result<Report> {
    let mut info = serde_json::Map::new();
    let mut raw = Vec::new();
    let mut prog_stats = Vec::new();
    let mut complete = false;
    for line in lines {
        if let Some(j) = line.strip_prefix(PROG) {
            prog_stats
                .push(serde_json::from_str::<Value>(j).with_context(|| format!("bad line {j}"))?);
            continue;
        }
        if let Some(j) = line.strip_prefix(INFO) {
            if let Ok(Value::Object(m)) = serde_json::from_str(j) {
                info.extend(m);
            }
        } else if let Some(j) = line.strip_prefix(RESULT) {
            raw.push(serde_json::from_str::<Value>(j).with_context(|| format!("bad line {j}"))?);
        } else if line.trim() == END {
            complete = true;
        }
    }
    if !complete {
        bail!("the bench output has no end marker: it did not finish");
    }
    // (round, config, op) -> measurement
    let mut by: BTreeMap<(u64, String, String), &Value> = BTreeMap::new();
    for m in &raw {
        let key = (
            m["round"].as_u64().unwrap_or(0),
            m["config"].as_str().unwrap_or("").to_string(),
            m["op"].as_str().unwrap_or("").to_string(),
        );
        by.insert(key, m);
    }
    let rounds: Vec<u64> = {
        let mut r: Vec<u64> = by.keys().map(|k| k.0).collect();
        r.dedup();
        r
    };
    let get = |round: u64, config: &str, op: &str| -> Result<&Value> {
        by.get(&(round, config.to_string(), op.to_string()))
            .copied()
            .with_context(|| format!("round {round} has no {config} {op} measurement"))
    };
    // The median batch rate: robust to another tenant's burst over part of a run (the
    // whole-run rate is in the JSON as well).
    let ops = |m: &Value| m["batch_median_ops_per_sec"].as_f64().unwrap_or(f64::NAN);
    let lat = |m: &Value, p: &str| m["lat_us"][p].as_f64().unwrap_or(f64::NAN);

    let lsm = info.get("backend").and_then(Value::as_str) == Some("lsm");
    let no_open_hook = (!lsm).then_some("this backend has no open hook: nothing of ours runs");
    let mut rows = Vec::new();
    // Program ns per operation in the statistics session, by workload name.
    let prog_ns_per_op = |workload: &str| -> Option<f64> {
        let w = prog_stats.iter().find(|w| w["workload"] == workload)?;
        let ops = w["ops"].as_f64()?;
        Some(
            w["programs"]
                .as_array()?
                .iter()
                // Programs that ran for the runner's own start and exit only are not per-op.
                .filter(|p| p["calls"].as_f64().unwrap_or(0.0) >= ops / 2.0)
                .filter_map(|p| p["ns_per_op"].as_f64())
                .sum(),
        )
    };
    let mut ratio_row = |name, config: &str, op: &str, target, min: f64, note| -> Result<()> {
        let mut base = Vec::new();
        let mut val = Vec::new();
        let mut ratios = Vec::new();
        for &r in &rounds {
            let b = ops(get(r, "unloaded", op)?);
            let v = ops(get(r, config, op)?);
            base.push(b);
            val.push(v);
            ratios.push(v / b);
        }
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ratio = median(ratios);
        let baseline = median(base);
        let workload = format!(
            "{} {op}",
            if config == "agent" {
                "agent"
            } else {
                "untracked"
            }
        );
        let base_ns = 1e9 / baseline;
        let bpf_estimate = prog_ns_per_op(&workload).map(|ns| base_ns / (base_ns + ns));
        rows.push(Row {
            name,
            baseline: Some(baseline),
            value: median(val),
            ratio: Some((ratio, lo, hi)),
            bpf_estimate,
            target,
            met: Some(ratio >= min),
            note,
        });
        Ok(())
    };
    ratio_row("untracked exec/s", "loaded", "exec", ">= 0.99", 0.99, None)?;
    ratio_row(
        "untracked open/s",
        "loaded",
        "open",
        ">= 0.99",
        0.99,
        no_open_hook,
    )?;
    ratio_row(
        "agent exec/s (allow fast path)",
        "agent",
        "exec",
        ">= 0.97",
        0.97,
        None,
    )?;
    ratio_row(
        "agent open/s (allow fast path)",
        "agent",
        "open",
        ">= 0.93",
        0.93,
        no_open_hook,
    )?;

    // Held exec: its per-exec latency minus an unheld agent exec's median, same round.
    let mut added_p50 = Vec::new();
    let mut added_p90 = Vec::new();
    let mut held_p50 = Vec::new();
    let mut unheld_p50 = Vec::new();
    let mut daemon_p50 = Vec::new();
    let mut warnings = Vec::new();
    for &r in &rounds {
        let held = get(r, "held", "exec")?;
        let unheld = lat(get(r, "agent", "exec")?, "p50");
        added_p50.push(lat(held, "p50") - unheld);
        added_p90.push(lat(held, "p90") - unheld);
        held_p50.push(lat(held, "p50"));
        unheld_p50.push(unheld);
        daemon_p50.push(held["daemon_us_p50"].as_f64().unwrap_or(f64::NAN));
        if let Some(counters) = held["counters"].as_array() {
            for c in counters {
                if c[1].as_u64().unwrap_or(0) != 0 {
                    warnings.push(format!("round {r}: kernel counter {} = {}", c[0], c[1]));
                }
            }
        }
    }
    for m in &raw {
        if let Some(f) = m["foreign_pins"].as_array().filter(|f| !f.is_empty()) {
            warnings.push(format!(
                "round {} {} {}: another interceptor had programs loaded ({}): its hooks ran too",
                m["round"],
                m["config"].as_str().unwrap_or(""),
                m["op"].as_str().unwrap_or(""),
                f.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    warnings.dedup();
    let added_p50_ms = median(added_p50) / 1000.0;
    let added_p90_ms = median(added_p90) / 1000.0;
    let host = place == Place::Host;
    let tcg = (!host).then_some("TCG emulation: absolute times mean nothing");
    rows.push(Row {
        name: "held exec, added latency p50 (ms)",
        baseline: None,
        value: added_p50_ms,
        ratio: None,
        bpf_estimate: None,
        target: if host { "< 0.3" } else { "(host only)" },
        met: host.then_some(added_p50_ms < 0.3),
        note: tcg,
    });
    rows.push(Row {
        name: "held exec, added latency p90 (ms)",
        baseline: None,
        value: added_p90_ms,
        ratio: None,
        bpf_estimate: None,
        target: "-",
        met: None,
        note: tcg,
    });
    // Memory: the daemon idle right after start, and after each round's workloads.
    let idle_mb = info
        .get("daemon_rss_idle_kb")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
        / 1024.0;
    rows.push(Row {
        name: "daemon RSS idle (MB)",
        baseline: None,
        value: idle_mb,
        ratio: None,
        bpf_estimate: None,
        target: "<= 50",
        met: Some(idle_mb <= 50.0),
        note: None,
    });
    let loaded_mb = median(
        rounds
            .iter()
            .map(|&r| {
                get(r, "held", "exec")
                    .map(|m| m["daemon_rss_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0)
            })
            .collect::<Result<_>>()?,
    );
    rows.push(Row {
        name: "daemon RSS after load (MB)",
        baseline: None,
        value: loaded_mb,
        ratio: None,
        bpf_estimate: None,
        target: "-",
        met: None,
        note: None,
    });
    let exec_p50 = |config: &str| -> Result<f64> {
        Ok(median(
            rounds
                .iter()
                .map(|&r| get(r, config, "exec").map(|m| lat(m, "p50")))
                .collect::<Result<_>>()?,
        ))
    };
    let held = json!({
        "exec_p50_us": {
            "not_loaded": exec_p50("unloaded")?,
            "loaded_untracked": exec_p50("loaded")?,
            "agent": exec_p50("agent")?,
        },
        "added_p50_ms": added_p50_ms,
        "added_p90_ms": added_p90_ms,
        "held_exec_p50_us": median(held_p50),
        "unheld_agent_exec_p50_us": median(unheld_p50),
        "daemon_adopt_to_resume_p50_us": median(daemon_p50),
    });
    Ok(Report {
        place,
        info,
        rows,
        held,
        warnings,
        raw,
        prog_stats,
    })
}

fn print_table(r: &Report) {
    let i = &r.info;
    let s = |k: &str| i.get(k).map(|v| v.to_string()).unwrap_or_default();
    println!();
    println!(
        "kernel bench, {}: backend {}, kernel {}, {} rounds (exec {} / open {} / held {} per round), realtime {}, workloads on cpu {}, load {} -> {}",
        r.place.name(),
        r.backend(),
        s("kernel").trim_matches('"'),
        s("rounds"),
        s("exec_n"),
        s("open_n"),
        s("held_n"),
        s("realtime"),
        s("workload_cpu"),
        s("loadavg_start").trim_matches('"'),
        s("loadavg_end").trim_matches('"'),
    );
    if r.place == Place::Vm {
        println!(
            "NOTE: the VM is QEMU TCG (software emulation): absolute numbers are meaningless; the ratios are what count."
        );
    }
    println!(
        "{:<36} {:>12} {:>12} {:>7} {:>15} {:>9} {:>11} {:>5}",
        "measurement",
        "not loaded",
        "loaded",
        "ratio",
        "ratio min..max",
        "bpf est.",
        "target",
        "met"
    );
    for row in &r.rows {
        let (base, ratio, spread) = match row.ratio {
            Some((m, lo, hi)) => (
                format!("{:.0}", row.baseline.unwrap_or(f64::NAN)),
                format!("{m:.3}"),
                format!("{lo:.3}..{hi:.3}"),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let estimate = row
            .bpf_estimate
            .map_or("-".to_string(), |e| format!("{e:.3}"));
        let value = if row.ratio.is_some() {
            format!("{:.0}", row.value)
        } else {
            format!("{:.3}", row.value)
        };
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        println!(
            "{:<36} {:>12} {:>12} {:>7} {:>15} {:>9} {:>11} {:>5}{}",
            row.name,
            base,
            value,
            ratio,
            spread,
            estimate,
            row.target,
            met,
            row.note.map(|n| format!("  ({n})")).unwrap_or_default()
        );
    }
    let h = &r.held;
    let f = |k: &str| h[k].as_f64().unwrap_or(f64::NAN);
    let e = &h["exec_p50_us"];
    println!(
        "exec latency p50 (robust to other tenants' load; median over rounds): not loaded {:.1} us, loaded {:.1} us, agent {:.1} us",
        e["not_loaded"].as_f64().unwrap_or(f64::NAN),
        e["loaded_untracked"].as_f64().unwrap_or(f64::NAN),
        e["agent"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "held exec: p50 {:.1} us vs unheld agent exec p50 {:.1} us; the daemon's own share (held task adopted -> resumed) p50 {:.1} us",
        f("held_exec_p50_us"),
        f("unheld_agent_exec_p50_us"),
        f("daemon_adopt_to_resume_p50_us"),
    );
    for w in &r.warnings {
        println!("WARNING: {w}");
    }
    if !r.prog_stats.is_empty() {
        println!(
            "what costs what (BPF run-time statistics, one extra session; they add a little to each call):"
        );
        println!(
            "{:<16} {:>10} {:<32} {:>10} {:>10} {:>10}",
            "workload", "op (us)", "program", "calls/op", "ns/call", "ns/op"
        );
        for w in &r.prog_stats {
            let ops = w["ops"].as_f64().unwrap_or(f64::NAN);
            let op_us = 1e6 / w["result"]["ops_per_sec"].as_f64().unwrap_or(f64::NAN);
            let mut first = true;
            let mut total = 0.0;
            for p in w["programs"].as_array().into_iter().flatten() {
                let calls = p["calls"].as_f64().unwrap_or(0.0);
                // Programs that ran only for the runner's own start and exit.
                if calls < ops / 2.0 {
                    continue;
                }
                let per_op = p["ns_per_op"].as_f64().unwrap_or(f64::NAN);
                total += per_op;
                println!(
                    "{:<16} {:>10} {:<32} {:>10.2} {:>10.0} {:>10.0}",
                    if first {
                        w["workload"].as_str().unwrap_or("")
                    } else {
                        ""
                    },
                    if first {
                        format!("{op_us:.2}")
                    } else {
                        String::new()
                    },
                    p["program"].as_str().unwrap_or(""),
                    calls / ops,
                    p["ns_per_call"].as_f64().unwrap_or(f64::NAN),
                    per_op,
                );
                first = false;
            }
            if first {
                println!(
                    "{:<16} {:>10.2} (no program of ours runs per operation)",
                    w["workload"].as_str().unwrap_or(""),
                    op_us
                );
            } else {
                println!(
                    "{:<16} {:>10} {:<32} {:>10} {:>10} {:>10.0}  = {:.2}% of the operation",
                    "",
                    "",
                    "total",
                    "",
                    "",
                    total,
                    total / (op_us * 1000.0) * 100.0
                );
            }
        }
    }
    let missed: Vec<&str> = r
        .rows
        .iter()
        .filter(|row| row.met == Some(false))
        .map(|row| row.name)
        .collect();
    if missed.is_empty() {
        println!("all targets met ({})", r.place.name());
    } else {
        println!(
            "targets missed ({}): {} (reported, not a failure: see docs/benchmarks.md)",
            r.place.name(),
            missed.join("; ")
        );
    }
    println!();
}

/// Points this process's stdout at its stderr until dropped (for --json).
struct StdoutToStderr {
    saved: i32,
}

impl StdoutToStderr {
    fn start() -> Result<Self> {
        use std::io::Write as _;
        std::io::stdout().flush()?;
        // SAFETY: plain fd duplication on the process's own standard descriptors.
        let saved = unsafe { libc::dup(1) };
        if saved < 0 || unsafe { libc::dup2(2, 1) } < 0 {
            bail!("redirecting stdout: {}", std::io::Error::last_os_error());
        }
        Ok(Self { saved })
    }
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        // SAFETY: restores the descriptor saved in start().
        unsafe {
            libc::dup2(self.saved, 1);
            libc::close(self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(round: u64, config: &str, op: &str, ops: f64, p50: f64, p90: f64) -> String {
        let mut v = json!({"round": round, "config": config, "op": op, "batch_median_ops_per_sec": ops,
                           "foreign_pins": []});
        if op == "exec" {
            v["lat_us"] = json!({"p50": p50, "p90": p90});
        }
        if config == "held" {
            v["daemon_us_p50"] = json!(40);
            v["daemon_rss_kb"] = json!(30 * 1024 + round);
            v["counters"] = json!([["event_dropped", 0]]);
        }
        format!("{RESULT}{v}")
    }

    #[test]
    fn ratios_are_medians_of_paired_rounds() {
        let mut lines = vec![format!(
            "{INFO}{{\"backend\":\"tracepoint\",\"daemon_rss_idle_kb\":20480}}"
        )];
        for (r, loaded) in [(1, 990.0), (2, 1000.0), (3, 500.0)] {
            lines.push(line(r, "unloaded", "exec", 1000.0, 100.0, 120.0));
            lines.push(line(r, "unloaded", "open", 1000.0, 0.0, 0.0));
            lines.push(line(r, "loaded", "exec", loaded, 100.0, 120.0));
            lines.push(line(r, "loaded", "open", 1000.0, 0.0, 0.0));
            lines.push(line(r, "agent", "exec", 960.0, 110.0, 130.0));
            lines.push(line(r, "agent", "open", 1000.0, 0.0, 0.0));
            lines.push(line(r, "held", "exec", 1.0, 310.0, 400.0));
        }
        lines.push(END.into());
        let rep = analyze(Place::Host, &lines).unwrap();
        let untracked = &rep.rows[0];
        assert_eq!(untracked.ratio.unwrap().0, 0.99);
        assert_eq!(untracked.met, Some(true));
        assert_eq!(rep.rows[2].met, Some(false), "0.96 < 0.97");
        assert!(rep.rows[1].note.is_some(), "tracepoint: no open hook");
        // 310 - 110 us
        assert!((rep.rows[4].value - 0.2).abs() < 1e-9);
        assert_eq!(rep.rows[4].met, Some(true));
        assert_eq!(
            (rep.rows[6].value, rep.rows[6].met),
            (20.0, Some(true)),
            "idle RSS in MB"
        );
        assert!(
            (rep.rows[7].value - (30.0 + 2.0 / 1024.0)).abs() < 1e-9,
            "median after load"
        );
    }

    #[test]
    fn an_unfinished_run_is_an_error() {
        assert!(analyze(Place::Host, &[format!("{INFO}{{}}")]).is_err());
    }
}
