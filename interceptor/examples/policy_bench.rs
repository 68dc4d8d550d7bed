//! Throughput of the userspace matcher and cost of compiling, for the performance note.
//! Not a test: numbers depend on the machine.
//!
//! Run: cargo run --release -p interceptor --example policy_bench

use std::time::{Duration, Instant};

use interceptor::policy::{DEFAULT_POLICY, ExecContext, Policy};

/// A 1,000-rule policy: exact binaries, basenames, argv regexes and globs, cwd globs.
fn thousand_rules() -> String {
    let mut text = String::from("version = 1\n");
    for i in 0..1000 {
        text += &format!(
            "[[rule]]\nname = \"r{i}\"\noperation = \"exec\"\naction = \"{}\"\n",
            ["allow", "audit", "ask", "deny"][i % 4]
        );
        text += &match i % 5 {
            0 => format!("binary = \"/usr/bin/tool{i}\"\n"),
            1 => format!("basename = \"tool{i}\"\nany_arg = [\"--flag{i}\", \"-x\"]\n"),
            2 => format!(
                "binary = \"/usr/bin/tool{i}\"\nargv_regex = '(^|\\s)--host[= ]\\S*prod{i}'\n"
            ),
            3 => format!("binary_glob = \"/opt/tool{i}/*/bin/*\"\nargv_glob = \"*deploy*\"\n"),
            _ => format!("binary = \"/usr/bin/tool{i}\"\ncwd = \"/srv/app{i}/**\"\n"),
        };
    }
    text
}

fn contexts() -> Vec<ExecContext> {
    let ctx = |binary: &str, argv: &[&str]| ExecContext {
        agent: Some("agent".into()),
        uid: Some(1000),
        binary: binary.into(),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        cwd: Some("/home/agent/src".into()),
        parent: Some("/usr/bin/bash".into()),
        env_keys: Some(vec!["PATH".into(), "HOME".into()]),
        home: Some("/home/agent".into()),
    };
    vec![
        ctx(
            "/usr/bin/git",
            &["git", "push", "--force", "origin", "main"],
        ),
        ctx(
            "/usr/bin/psql",
            &["psql", "-h", "prod-db", "-c", "select 1"],
        ),
        ctx("/usr/bin/make", &["make", "-j4"]),
        ctx("/usr/bin/tool502", &["tool502", "--host=prod502"]),
        ctx(
            "/usr/bin/kubectl",
            &["kubectl", "--context", "dev", "apply", "-f", "x.yaml"],
        ),
    ]
}

fn evals_per_sec(policy: &Policy, contexts: &[ExecContext]) -> (f64, Duration) {
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        for c in contexts {
            std::hint::black_box(policy.evaluate_exec(std::hint::black_box(c)));
            n += 1;
        }
    }
    let elapsed = start.elapsed();
    (n as f64 / elapsed.as_secs_f64(), elapsed / n as u32)
}

fn timed<T>(f: impl Fn() -> T) -> (T, Duration) {
    let runs = 20;
    let start = Instant::now();
    for _ in 1..runs {
        std::hint::black_box(f());
    }
    let out = f();
    (out, start.elapsed() / runs)
}

fn main() {
    let contexts = contexts();
    let big = thousand_rules();
    for (name, text) in [
        ("default.toml", DEFAULT_POLICY.to_string()),
        ("1,000 rules", big),
    ] {
        let (policy, parse) = timed(|| Policy::parse(&text, name).expect("valid"));
        let (compiled, compile) = timed(|| policy.compile());
        let (rate, per) = evals_per_sec(&policy, &contexts);
        println!(
            "{name:<13} rules {:>5}  parse {:>9.2?}  compile {:>9.2?} ({} kernel entries)  evaluate_exec {:>10.0}/s ({:.2?} each)",
            policy.rules.len(),
            parse,
            compile,
            compiled.exec.len(),
            rate,
            per
        );
    }
}
