//! The approvals bench (`cargo xtask bench approvals`, docs/benchmarks.md): a real daemon
//! on this host, a rule that asks, a signed webhook to a local receiver, and a reviewer
//! who answers through the review link at once. Per held exec it measures
//!
//! - hold -> webhook: from the daemon seeing the hold (`requested_at_ms` in the webhook
//!   body) to the webhook's arrival at the receiver (same clock, millisecond resolution);
//! - approval POST -> resumed: from sending the review form's POST to its answer, which
//!   the daemon sends only after the task was resumed (checked: the task is no longer
//!   stopped when the answer arrives).
//!
//! Prints one `result name=value ...` line per measurement and a summary; needs root and
//! the environment of the integration tests (`INTERCEPTOR_BIN`, `INTERCEPTOR_PROBE`,
//! `INTERCEPTOR_EXPECT_BACKEND`).

use std::time::{Duration, Instant, UNIX_EPOCH};

use interceptor_integration::http;
use interceptor_integration::receiver::{self, Receiver};
use interceptor_integration::{Daemon, Spawned, TestDir, fate, proc_state};

const SECRET: &str = "approval-bench-webhook-secret";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut ms: Vec<f64>, target_p99: f64) {
    ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
    );
    println!(
        "result name={name} n={} p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3} target_p99_ms={target_p99} met={}",
        ms.len(),
        p99 < target_p99
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: how many held execs"))
        .unwrap_or(200);
    let dir = TestDir::new("approval-bench");
    let receiver = Receiver::start();
    let tool = dir.probe_copy("bench-held");
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "version = 1\n\n[[rule]]\nname = \"bench-ask\"\noperation = \"exec\"\nbinary = \"{}\"\naction = \"ask\"\ntimeout = \"5m\"\n",
            tool.display()
        ),
    )
    .unwrap();
    let secret = dir.secret("hook.secret", SECRET);
    let config = dir.join("approvals.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n\n[[reviewer]]\nname = \"bench\"\nuids = [0]\n\n[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\n",
            receiver.url("/hook"),
            secret.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with(&dir, &[], &["--approvals", config.to_str().unwrap()]);
    let addr = daemon.json(&["status", "--json"])["http"]
        .as_str()
        .expect("listener")
        .to_string();

    let mut to_webhook = Vec::with_capacity(n);
    let mut to_resume = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let agent = Spawned::start(daemon.agent("bench-bot", &tool, &["exit", "0"]));
        let hook = receiver.next(Duration::from_secs(60)).expect("webhook");
        let checked = receiver::check_webhook(&hook, SECRET.as_bytes()).expect("webhook shape");
        let arrived_ms = hook.at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1e3;
        let requested_ms = checked.json["requested_at_ms"]
            .as_f64()
            .expect("requested_at_ms");
        to_webhook.push(arrived_ms - requested_ms);

        let link = &checked.links[0];
        let path = &link[link.find("/r/").expect("a review link")..];
        let page = http::request(&addr, "GET", path, &[], b"").expect("GET the page");
        let csrf = page.hidden_input("csrf").expect("csrf");
        let body = http::form(&[("csrf", &csrf), ("decision", "approve")]);
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let sent = Instant::now();
        let answer = http::request(&addr, "POST", path, &headers, body.as_bytes()).expect("POST");
        let took = sent.elapsed();
        assert_eq!(answer.outcome(), Some("approved"), "{}", answer.body);
        assert_ne!(
            proc_state(agent.pid()),
            Some('T'),
            "resumed before the answer"
        );
        to_resume.push(took.as_secs_f64() * 1e3);
        assert_eq!(fate(agent.finish().0), "exit:0");
        if (i + 1) % 50 == 0 {
            eprintln!("{} of {n} held execs approved", i + 1);
        }
    }
    eprintln!(
        "{n} held execs, each notified and approved, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    report("hold_to_webhook", to_webhook, 50.0);
    report("approval_post_to_resumed", to_resume, 10.0);
}
