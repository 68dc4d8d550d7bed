//! The review page in a real browser: headless Chromium opens a reviewer's link from the
//! webhook, sees the held command's context, types a comment and presses Approve; the
//! held task resumes and the audit log names the reviewer. Screenshots of the page and of
//! the result land in target/test-artifacts/.
//!
//! Host only (tier 2): the VM has no Chromium.

use std::time::Duration;

use interceptor_integration::receiver::{self, Receiver};
use interceptor_integration::webdriver::WebDriver;
use interceptor_integration::{Daemon, Spawned, TestDir, fate, proc_state};

const HOOK_SECRET: &str = "browser-test-webhook-secret-42";

#[test]
fn a_reviewer_approves_in_chromium_and_the_task_resumes() {
    let dir = TestDir::new("review-browser");
    let receiver = Receiver::start();
    let tool = dir.probe_copy("db-export");
    let marker = dir.join("exported.csv");
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "customer-export"
operation = "exec"
binary = "{}"
action = "ask"
timeout = "5m"
reason = "Exports of customer data need a human's yes."
severity = "critical"
controls = ["SOC2:CC6.1", "NIST-800-53:AC-3"]
"#,
            tool.display()
        ),
    )
    .unwrap();
    let secret = dir.secret("hook.secret", HOOK_SECRET);
    let config = dir.join("approvals.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n\n[[reviewer]]\nname = \"dana\"\nuids = [0]\n\n\
             [[channel]]\nname = \"hooks\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\n",
            receiver.url("/hook"),
            secret.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with(&dir, &[], &["--approvals", config.to_str().unwrap()]);

    let agent =
        Spawned::start(daemon.agent("export-bot", &tool, &["touch", marker.to_str().unwrap()]));
    let request = daemon.wait_pending(agent.pid());
    let id = request["id"].as_u64().unwrap();
    let hook = receiver.next(Duration::from_secs(60)).expect("the webhook");
    let checked = receiver::check_webhook(&hook, HOOK_SECRET.as_bytes()).expect("webhook shape");
    assert_eq!(checked.request_id, id);
    let link = checked.links.first().expect("dana's link").clone();

    let browser = WebDriver::start();
    browser.navigate(&link);
    let argv = browser.text(&browser.find("#argv"));
    assert!(
        argv.contains(marker.to_str().unwrap()),
        "argv shown: {argv}"
    );
    assert!(
        browser
            .text(&browser.find("#rule"))
            .contains("customer-export")
    );
    assert!(
        browser
            .text(&browser.find("#controls"))
            .contains("SOC2:CC6.1")
    );
    assert!(browser.text(&browser.find("#time-left")).contains("left"));
    browser.save_screenshot("review-page");
    assert_eq!(
        proc_state(agent.pid()),
        Some('T'),
        "loading the page decides nothing"
    );

    browser.send_keys(&browser.find("#comment"), "ticket CS-4411, customer asked");
    browser.click(&browser.find("#approve"));
    let outcome = browser.wait_for("the result page", Duration::from_secs(30), |b| {
        b.try_find("#outcome")
            .ok()
            .and_then(|el| b.attribute(&el, "data-outcome"))
    });
    assert_eq!(outcome, "approved");
    browser.save_screenshot("review-approved");

    let (status, _) = agent.finish();
    assert_eq!(fate(status), "exit:0", "the approved task ran");
    assert!(marker.exists());
    let approved = daemon.wait_for("the approval row", || {
        daemon
            .audit_rows(&["--kind", "approval"])
            .into_iter()
            .find(|r| r["event"]["request"] == id && r["outcome"] == "approved")
    });
    assert_eq!(approved["event"]["by"], "dana", "{approved:#}");
    assert_eq!(approved["event"]["channel"], "page");
    assert!(
        approved["event"]["detail"]
            .as_str()
            .unwrap()
            .contains("ticket CS-4411"),
        "{approved:#}"
    );
}
