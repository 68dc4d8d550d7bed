//! Human approvals end to end, through the channels: a held exec is stored, a signed
//! webhook carrying the whole context reaches a local receiver, and the reviewer answers
//! through the review link it carries (GET shows, only a POST with the page's CSRF token
//! decides) or through a signed Slack click. Deny kills, a timeout kills and a late click
//! is refused, a grant lets the same exec through until its uses run out; forged,
//! replayed, stale and foreign answers are refused and recorded.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac as _};
use interceptor_integration::http::{self, HttpReply};
use interceptor_integration::receiver::{self, Receiver};
use interceptor_integration::{Daemon, Spawned, TestDir, approval_steps, fate, proc_state};
use serde_json::Value;
use sha2::Sha256;

const HOOK_SECRET: &str = "webhook-secret-for-tests-0123456789";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// Reviewers alice (root on this host, Slack U0ALICE) and bob (Slack U0BOB only); a
/// signed webhook and a Slack channel, both to the receiver.
fn approvals_config(dir: &TestDir, receiver: &Receiver) -> String {
    let hook = dir.secret("hook.secret", HOOK_SECRET).display().to_string();
    let slack = dir
        .secret("slack.secret", SLACK_SECRET)
        .display()
        .to_string();
    let path = dir.join("approvals.toml");
    std::fs::write(
        &path,
        format!(
            r#"version = 1

[[reviewer]]
name = "alice"
email = "alice@example.com"
slack_user = "U0ALICE"
uids = [0]

[[reviewer]]
name = "bob"
slack_user = "U0BOB"

[[channel]]
name = "hooks"
kind = "webhook"
url = "{}"
secret_file = "{hook}"

[[channel]]
name = "ops-slack"
kind = "slack"
url = "{}"
signing_secret_file = "{slack}"
"#,
            receiver.url("/hook"),
            receiver.url("/slack-webhook"),
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The `prod-deploy` rule on `binary`, then `extra` (more TOML).
fn ask_policy(dir: &TestDir, binary: &Path, timeout: &str, extra: &str) {
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"version = 1

[[rule]]
name = "prod-deploy"
operation = "exec"
binary = "{}"
action = "ask"
timeout = "{timeout}"
on_timeout = "deny"
reason = "Deploys to production need a human."
severity = "high"
controls = ["SOC2:CC8.1", "NIST-800-53:CM-3"]
grant = {{ max_ttl = "30m", max_uses = 2, scope = "exact-argv" }}
{extra}"#,
            binary.display()
        ),
    )
    .unwrap();
}

struct Setup {
    dir: TestDir,
    receiver: Receiver,
    daemon: Daemon,
    tool: std::path::PathBuf,
    /// The listener, `IP:PORT`.
    http: String,
}

impl Setup {
    /// Kills the daemon (SIGKILL: no cleanup) and starts a new one with the same state.
    fn restart_daemon(&mut self) {
        self.daemon.kill9();
        self.daemon.restart();
        let status = self.daemon.json(&["status", "--json"]);
        self.http = status["http"]
            .as_str()
            .expect("an HTTP listener")
            .to_string();
    }
}

fn setup(name: &str, timeout: &str) -> Setup {
    setup_with(name, timeout, |_| String::new())
}

/// [`setup`] with more policy, written knowing the test directory.
fn setup_with(name: &str, timeout: &str, extra: impl Fn(&TestDir) -> String) -> Setup {
    let dir = TestDir::new(name);
    let receiver = Receiver::start();
    let tool = dir.probe_copy("deploy-tool");
    ask_policy(&dir, &tool, timeout, &extra(&dir));
    let config = approvals_config(&dir, &receiver);
    let daemon = Daemon::start_with(&dir, &[], &["--approvals", &config]);
    let status = daemon.json(&["status", "--json"]);
    let http = status["http"]
        .as_str()
        .expect("an HTTP listener")
        .to_string();
    Setup {
        dir,
        receiver,
        daemon,
        tool,
        http,
    }
}

/// The next delivery to `path`, checked against its channel's documented shape.
fn delivery(s: &Setup, path: &str) -> receiver::Checked {
    loop {
        let r = s
            .receiver
            .next(Duration::from_secs(60))
            .expect("a notification");
        if r.path != path {
            continue;
        }
        return match path {
            "/hook" => receiver::check_webhook(&r, HOOK_SECRET.as_bytes()),
            _ => receiver::check_slack(&r),
        }
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&r.body)));
    }
}

/// The webhook and the Slack message of one request, whichever came first.
fn both_deliveries(s: &Setup) -> (receiver::Checked, receiver::Checked) {
    let (mut hook, mut slack) = (None, None);
    while hook.is_none() || slack.is_none() {
        let r = s
            .receiver
            .next(Duration::from_secs(60))
            .expect("a notification");
        match r.path.as_str() {
            "/hook" => hook = Some(receiver::check_webhook(&r, HOOK_SECRET.as_bytes())),
            _ => slack = Some(receiver::check_slack(&r)),
        }
    }
    let shape =
        |c: Result<receiver::Checked, receiver::ShapeError>| c.unwrap_or_else(|e| panic!("{e}"));
    (shape(hook.unwrap()), shape(slack.unwrap()))
}

/// Alice's review link (path only) from a webhook body.
fn link_of(body: &Value, reviewer: &str) -> String {
    let links = body["links"].as_array().expect("links");
    let url = links
        .iter()
        .find(|l| l["reviewer"] == reviewer)
        .unwrap_or_else(|| panic!("no link for {reviewer}: {body:#}"))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let path = url.find("/r/").map(|i| url[i..].to_string());
    path.unwrap_or_else(|| panic!("link {url:?} has no /r/"))
}

fn get(s: &Setup, path: &str) -> HttpReply {
    http::request(&s.http, "GET", path, &[], b"").expect("GET")
}

fn post_form(s: &Setup, path: &str, fields: &[(&str, &str)]) -> HttpReply {
    let body = http::form(fields);
    http::request(
        &s.http,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .expect("POST")
}

fn row<'a>(rows: &'a [Value], step: &str, detail_has: &str) -> &'a Value {
    rows.iter()
        .find(|r| {
            r["outcome"] == step
                && r["event"]["detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains(detail_has)
        })
        .unwrap_or_else(|| panic!("no {step} row with {detail_has:?} in {rows:#?}"))
}

/// Starts the agent on the held tool; returns it and its request id.
fn held(s: &Setup, agent_name: &str, marker: &Path) -> (Spawned, u64) {
    let agent = Spawned::start(s.daemon.agent(
        agent_name,
        &s.tool,
        &["touch", marker.to_str().unwrap()],
    ));
    let request = s.daemon.wait_pending(agent.pid());
    assert_eq!(proc_state(agent.pid()), Some('T'), "held");
    (agent, request["id"].as_u64().expect("request id"))
}

#[test]
fn webhook_carries_the_context_and_the_review_link_approves_only_by_post() {
    let s = setup("channels-link", "60s");
    let marker = s.dir.join("deployed");
    // The agent states its purpose from inside its tree, then runs the held tool.
    let script = format!(
        "{} --socket {} context --rationale 'rolling out release 4.2 (OPS-112)' && exec {} touch {}",
        interceptor_integration::interceptor_bin().display(),
        s.dir.join("control.sock").display(),
        s.tool.display(),
        marker.display()
    );
    let agent = Spawned::start(s.daemon.agent(
        "deploy-bot",
        Path::new("/bin/sh"),
        &["-c", &script],
    ));
    let request = s.daemon.wait_pending(agent.pid());
    let id = request["id"].as_u64().unwrap();

    let (hook, slack) = both_deliveries(&s);
    assert_eq!(hook.request_id, id);
    let body = &hook.json;
    let asked = &body["request"];
    assert_eq!(asked["agent"], "deploy-bot", "{body:#}");
    assert_eq!(asked["rule"], "prod-deploy");
    assert_eq!(asked["reason"], "Deploys to production need a human.");
    assert_eq!(
        asked["rationale"],
        serde_json::json!({ "text": "rolling out release 4.2 (OPS-112)", "verified": false })
    );
    let argv: Vec<&str> = asked["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(argv[1..], ["touch", marker.to_str().unwrap()], "{body:#}");
    assert!(asked["controls"].to_string().contains("SOC2:CC8.1"));
    assert_eq!(hook.links.len(), 2, "one link per reviewer: {body:#}");
    assert_eq!(slack.request_id, id);

    // A GET (a link unfurler, a prefetcher, a leaked link) only shows.
    let alice = link_of(body, "alice");
    let page = get(&s, &alice);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("OPS-112"), "the rationale is shown");
    assert!(
        page.body.contains(marker.to_str().unwrap()),
        "argv is shown"
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proc_state(agent.pid()), Some('T'), "a GET decides nothing");
    let csrf = page.hidden_input("csrf").expect("the form's CSRF token");

    // A POST without the page's CSRF token is refused.
    let forged = post_form(&s, &alice, &[("csrf", "forged"), ("decision", "approve")]);
    assert_eq!((forged.status, forged.outcome()), (403, Some("forbidden")));
    assert_eq!(proc_state(agent.pid()), Some('T'), "still held");
    // Bob's CSRF token does not work on Alice's link either.
    let bob = link_of(body, "bob");
    let bob_csrf = get(&s, &bob).hidden_input("csrf").unwrap();
    assert_ne!(bob_csrf, csrf);
    let foreign = post_form(&s, &alice, &[("csrf", &bob_csrf), ("decision", "approve")]);
    assert_eq!(foreign.status, 403);

    let answer = post_form(
        &s,
        &alice,
        &[
            ("csrf", &csrf),
            ("decision", "approve"),
            ("comment", "release window, checked"),
        ],
    );
    assert_eq!(
        (answer.status, answer.outcome()),
        (200, Some("approved")),
        "{}",
        answer.body
    );
    let (status, _) = agent.finish();
    assert_eq!(fate(status), "exit:0", "approved: the tool ran");
    assert!(marker.exists());

    // The same link again, and Bob's link after the decision: refused, recorded.
    let replay = post_form(&s, &alice, &[("csrf", &csrf), ("decision", "approve")]);
    assert_eq!(
        (replay.status, replay.outcome()),
        (409, Some("already_decided"))
    );
    let late = post_form(&s, &bob, &[("csrf", &bob_csrf), ("decision", "deny")]);
    assert_eq!(late.status, 409);
    let garbage = get(&s, "/r/not-a-token");
    assert_eq!(
        (garbage.status, garbage.outcome()),
        (404, Some("invalid_link"))
    );
    let unknown = get(&s, &format!("/r/{}", "A".repeat(43)));
    assert_eq!(unknown.status, 404);

    let rows = s.daemon.approval_rows(id, 7);
    let approved = row(&rows, "approved", "release window, checked");
    assert_eq!(approved["event"]["by"], "alice", "{approved:#}");
    assert_eq!(approved["event"]["channel"], "page");
    for channel in ["hooks", "ops-slack"] {
        let notified = rows
            .iter()
            .find(|r| r["outcome"] == "notified" && r["event"]["channel"] == channel)
            .unwrap_or_else(|| panic!("no notified row for {channel}: {rows:#?}"));
        assert!(
            notified["event"]["detail"]
                .as_str()
                .unwrap()
                .starts_with("delivered"),
            "{notified:#}"
        );
    }
    row(&rows, "rejected", "CSRF");
    row(&rows, "rejected", "already used");
    let decision = s
        .daemon
        .audit_rows(&["--kind", "decision", "--rule", "prod-deploy"])
        .into_iter()
        .last()
        .expect("the closing decision");
    assert_eq!(
        (
            decision["decided_by"].as_str(),
            decision["approver"].as_str()
        ),
        (Some("reviewer"), Some("alice")),
        "{decision:#}"
    );
    // The malformed and unknown links are recorded too (no request to tie them to).
    let all = s.daemon.audit_rows(&["--kind", "approval"]);
    assert!(
        all.iter()
            .any(|r| r["event"]["detail"] == "malformed review link")
    );
    assert!(all.iter().any(|r| {
        r["event"]["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("unknown review link")
    }));
}

#[test]
fn deny_through_the_link_kills_and_a_timeout_refuses_the_late_click() {
    let s = setup("channels-deny", "3s");
    let marker = s.dir.join("deployed");
    let (agent, id) = held(&s, "deploy-bot", &marker);
    let hook = delivery(&s, "/hook");
    let bob = link_of(&hook.json, "bob");
    let csrf = get(&s, &bob).hidden_input("csrf").unwrap();
    let answer = post_form(&s, &bob, &[("csrf", &csrf), ("decision", "deny")]);
    assert_eq!((answer.status, answer.outcome()), (200, Some("denied")));
    let (status, _) = agent.finish();
    assert_eq!(
        fate(status),
        "signal:9",
        "denied: killed before its first instruction"
    );
    assert!(!marker.exists());
    let rows = s.daemon.approval_rows(id, 4);
    assert_eq!(row(&rows, "denied", "")["event"]["by"], "bob");

    // Nobody answers the next one: killed at the deadline; the click after it is refused.
    let (agent, id) = held(&s, "deploy-bot", &marker);
    let hook = delivery(&s, "/hook");
    assert_eq!(hook.request_id, id);
    let alice = link_of(&hook.json, "alice");
    let csrf = get(&s, &alice).hidden_input("csrf").unwrap();
    let (status, _) = agent.finish();
    assert_eq!(fate(status), "signal:9", "on_timeout = deny");
    let late = post_form(&s, &alice, &[("csrf", &csrf), ("decision", "approve")]);
    assert_eq!(
        (late.status, late.outcome()),
        (410, Some("expired")),
        "{}",
        late.body
    );
    let rows = s.daemon.approval_rows(id, 5);
    assert!(approval_steps(&rows).contains(&"expired"), "{rows:#?}");
    let refused = row(&rows, "rejected", "late answer refused");
    assert_eq!(refused["event"]["by"], "alice");
}

#[test]
fn a_grant_lets_the_same_exec_through_until_its_uses_run_out() {
    let s = setup("channels-grant", "60s");
    let marker = s.dir.join("deployed");
    let (agent, id) = held(&s, "deploy-bot", &marker);
    let hook = delivery(&s, "/hook");
    let alice = link_of(&hook.json, "alice");
    let csrf = get(&s, &alice).hidden_input("csrf").unwrap();
    // More than the rule allows is refused, and nothing is decided.
    let greedy = post_form(
        &s,
        &alice,
        &[
            ("csrf", &csrf),
            ("decision", "approve_grant"),
            ("grant_minutes", "10"),
            ("grant_uses", "3"),
        ],
    );
    assert_eq!(
        (greedy.status, greedy.outcome()),
        (400, Some("bad_form")),
        "{}",
        greedy.body
    );
    assert_eq!(proc_state(agent.pid()), Some('T'));
    let answer = post_form(
        &s,
        &alice,
        &[
            ("csrf", &csrf),
            ("decision", "approve_grant"),
            ("grant_minutes", "10"),
            ("grant_uses", "2"),
        ],
    );
    assert_eq!(
        answer.outcome(),
        Some("approved_with_grant"),
        "{}",
        answer.body
    );
    assert_eq!(fate(agent.finish().0), "exit:0");

    let grants = s.daemon.json(&["grants", "list", "--json"]);
    let grant = &grants.as_array().unwrap()[0];
    assert_eq!(
        (grant["kind"].as_str(), grant["uses_left"].as_u64()),
        (Some("exec"), Some(2))
    );
    assert_eq!(grant["by"], "alice");

    // Twice without asking, the same argv.
    for _ in 0..2 {
        let again = Spawned::start(s.daemon.agent(
            "deploy-bot",
            &s.tool,
            &["touch", marker.to_str().unwrap()],
        ));
        assert_eq!(fate(again.finish().0), "exit:0", "granted");
    }
    let decisions = s
        .daemon
        .audit_rows(&["--kind", "decision", "--rule", "prod-deploy"]);
    let by_grant = decisions
        .iter()
        .filter(|d| d["decided_by"] == "grant")
        .count();
    assert_eq!(by_grant, 2, "{decisions:#?}");
    // Used up: the third asks again.
    let (agent, next) = held(&s, "deploy-bot", &marker);
    assert!(next > id);
    s.daemon.json(&[
        "approvals",
        "deny",
        &next.to_string(),
        "--comment",
        "enough",
        "--json",
    ]);
    assert_eq!(fate(agent.finish().0), "signal:9");
    assert!(
        s.daemon
            .json(&["grants", "list", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// Slack's v0 signature of `body` at `ts`.
fn slack_signature(secret: &str, ts: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn click(user: &str, action: &str, id: u64) -> String {
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": { "id": user, "username": user.to_lowercase(), "team_id": "T0TEAM" },
        "team": { "id": "T0TEAM" },
        "actions": [{ "action_id": action, "value": id.to_string(), "type": "button" }],
    });
    http::form(&[("payload", &payload.to_string())])
}

fn post_slack(s: &Setup, body: &str, ts: u64, signature: &str) -> HttpReply {
    http::request(
        &s.http,
        "POST",
        "/slack/interactions",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Slack-Request-Timestamp", &ts.to_string()),
            ("X-Slack-Signature", signature),
        ],
        body.as_bytes(),
    )
    .expect("POST to the Slack endpoint")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn slack_clicks_decide_only_when_signed_fresh_first_and_from_a_reviewer() {
    let s = setup("channels-slack", "60s");
    let marker = s.dir.join("deployed");
    let (agent, id) = held(&s, "deploy-bot", &marker);
    let message = delivery(&s, "/slack-webhook");
    assert_eq!(message.request_id, id);

    let body = click("U0ALICE", "interceptor_approve", id);
    let ts = now_secs();
    // A wrong secret, a stale timestamp, a changed body: 401, nothing decided.
    let forged = post_slack(&s, &body, ts, &slack_signature("not-the-secret", ts, &body));
    assert_eq!(forged.status, 401, "{}", forged.body);
    let stale_ts = ts - 600;
    let stale = post_slack(
        &s,
        &body,
        stale_ts,
        &slack_signature(SLACK_SECRET, stale_ts, &body),
    );
    assert_eq!(stale.status, 401, "{}", stale.body);
    let other = click("U0ALICE", "interceptor_approve", id + 1);
    let tampered = post_slack(&s, &other, ts, &slack_signature(SLACK_SECRET, ts, &body));
    assert_eq!(tampered.status, 401);
    // Signed, but by a Slack user who is no reviewer: refused, still held.
    let stranger = click("U0MALLORY", "interceptor_approve", id);
    let reply = post_slack(
        &s,
        &stranger,
        ts,
        &slack_signature(SLACK_SECRET, ts, &stranger),
    );
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("not a reviewer"), "{}", reply.body);
    assert_eq!(proc_state(agent.pid()), Some('T'), "nothing decided yet");

    let signature = slack_signature(SLACK_SECRET, ts, &body);
    let reply = post_slack(&s, &body, ts, &signature);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json: Value = serde_json::from_str(&reply.body).expect("Slack gets JSON back");
    assert!(json.to_string().contains("Approved* by alice"), "{json:#}");
    assert_eq!(fate(agent.finish().0), "exit:0", "approved from Slack");
    // The very same signed request again: a replay.
    let replay = post_slack(&s, &body, ts, &signature);
    assert_eq!(replay.status, 401);
    assert!(replay.body.contains("replayed"));

    let rows = s.daemon.approval_rows(id, 4);
    let approved = row(&rows, "approved", "");
    assert_eq!(
        (
            approved["event"]["by"].as_str(),
            approved["event"]["channel"].as_str()
        ),
        (Some("alice"), Some("slack"))
    );
    row(&rows, "rejected", "U0MALLORY is not a configured reviewer");
    let all = s.daemon.audit_rows(&["--kind", "approval"]);
    for why in ["does not match", "outside the", "replayed"] {
        assert!(
            all.iter()
                .any(|r| r["event"]["detail"].as_str().unwrap_or("").contains(why)),
            "no refusal saying {why:?}: {all:#?}"
        );
    }
}

#[test]
fn the_control_socket_answers_only_configured_reviewers_outside_agents() {
    let s = setup("channels-cli", "60s");
    let marker = s.dir.join("deployed");
    let (agent, id) = held(&s, "deploy-bot", &marker);
    // An agent trying to approve itself over the control socket.
    let own = s
        .daemon
        .agent(
            "deploy-bot",
            &interceptor_integration::interceptor_bin(),
            &[
                "--socket",
                s.dir.join("control.sock").to_str().unwrap(),
                "approvals",
                "approve",
                &id.to_string(),
            ],
        )
        .output()
        .unwrap();
    let (status, output) = (
        own.status,
        String::from_utf8_lossy(&own.stderr).into_owned(),
    );
    assert_ne!(fate(status), "exit:0", "an agent cannot approve: {output}");
    assert!(
        output.contains("agents cannot list or decide approvals"),
        "{output}"
    );
    // A uid that is no reviewer's (nobody) cannot either.
    let mut as_nobody = s.daemon.command(&["approvals", "approve", &id.to_string()]);
    std::os::unix::process::CommandExt::uid(&mut as_nobody, 65534);
    let out = as_nobody.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("not a configured reviewer"),
        "{stderr}"
    );
    assert_eq!(proc_state(agent.pid()), Some('T'));

    // `approvals show` has the whole context; root acts as alice.
    let shown = s
        .daemon
        .json(&["approvals", "show", &id.to_string(), "--json"]);
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["reviewers"], serde_json::json!(["alice", "bob"]));
    assert!(
        shown["notice"]["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["url"] == ""),
        "links are secrets and never shown: {shown:#}"
    );
    s.daemon.json(&[
        "approvals",
        "approve",
        &id.to_string(),
        "--comment",
        "on call ok",
        "--json",
    ]);
    assert_eq!(fate(agent.finish().0), "exit:0");
    let rows = s.daemon.approval_rows(id, 4);
    let approved = row(&rows, "approved", "on call ok");
    assert_eq!(
        (
            approved["event"]["by"].as_str(),
            approved["event"]["channel"].as_str()
        ),
        (Some("alice"), Some("cli"))
    );
    row(&rows, "rejected", "");
    let shown = s
        .daemon
        .json(&["approvals", "show", &id.to_string(), "--json"]);
    assert_eq!(shown["state"], "approved");
}

#[test]
fn pending_requests_survive_a_daemon_restart_with_their_links_and_deadlines() {
    let mut s = setup_with("channels-restart", "60s", |dir| {
        let quick = dir.probe_copy("quick-tool");
        format!(
            "\n[[rule]]\nname = \"quick\"\noperation = \"exec\"\nbinary = \"{}\"\naction = \"ask\"\ntimeout = \"4s\"\n",
            quick.display()
        )
    });
    let marker = s.dir.join("deployed");
    let (agent, id) = held(&s, "deploy-bot", &marker);
    let hook = delivery(&s, "/hook");
    let alice = link_of(&hook.json, "alice");
    let csrf = get(&s, &alice).hidden_input("csrf").unwrap();
    let quick_marker = s.dir.join("quick-ran");
    let quick = Spawned::start(s.daemon.agent(
        "deploy-bot",
        &s.dir.join("quick-tool"),
        &["touch", quick_marker.to_str().unwrap()],
    ));
    let quick_id = s.daemon.wait_pending(quick.pid())["id"].as_u64().unwrap();
    let quick_held = std::time::Instant::now();

    s.restart_daemon();
    // The same id, link and CSRF token work with the new daemon.
    let listed = s.daemon.wait_pending(agent.pid());
    assert_eq!(listed["id"].as_u64(), Some(id), "{listed:#}");
    assert_eq!(
        proc_state(agent.pid()),
        Some('T'),
        "still held across the restart"
    );
    let page = get(&s, &alice);
    assert_eq!(page.status, 200, "{}", page.body);
    let answer = post_form(&s, &alice, &[("csrf", &csrf), ("decision", "approve")]);
    assert_eq!(answer.outcome(), Some("approved"), "{}", answer.body);
    assert_eq!(fate(agent.finish().0), "exit:0");
    let shown = s
        .daemon
        .json(&["approvals", "show", &id.to_string(), "--json"]);
    assert_eq!(shown["state"], "approved", "{shown:#}");

    // The short request keeps its deadline: killed about 4 s after it was held, not 4 s
    // after the restart plus whatever the new daemon would have granted.
    let (status, _) = quick.finish();
    assert_eq!(
        fate(status),
        "signal:9",
        "on_timeout = deny after the restart"
    );
    assert!(!quick_marker.exists());
    assert!(quick_held.elapsed() < Duration::from_secs(30));
    let rows = s.daemon.approval_rows(quick_id, 2);
    assert!(approval_steps(&rows).contains(&"expired"), "{rows:#?}");
}

#[test]
fn a_quorum_rule_waits_for_two_different_reviewers_and_one_denial_ends_it() {
    let s = setup_with("channels-quorum", "60s", |dir| {
        let two = dir.probe_copy("two-person-tool");
        format!(
            "\n[[rule]]\nname = \"two-person\"\noperation = \"exec\"\nbinary = \"{}\"\naction = \"ask\"\nmin_approvals = 2\n",
            two.display()
        )
    });
    let tool = s.dir.join("two-person-tool");
    let marker = s.dir.join("ran");
    let start = || {
        let agent = Spawned::start(s.daemon.agent(
            "ops-bot",
            &tool,
            &["touch", marker.to_str().unwrap()],
        ));
        let id = s.daemon.wait_pending(agent.pid())["id"].as_u64().unwrap();
        (agent, id)
    };
    let (agent, id) = start();
    // Alice approves from the CLI: recorded, still held.
    let vote = s
        .daemon
        .json(&["approvals", "approve", &id.to_string(), "--json"]);
    assert_eq!(vote["decision"], "approval_recorded", "{vote:#}");
    assert_eq!(proc_state(agent.pid()), Some('T'), "one approval of two");
    let again = s.daemon.cli(&["approvals", "approve", &id.to_string()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already approved"));
    // Bob approves through his link: the quorum is reached.
    let hook = loop {
        let h = delivery(&s, "/hook");
        if h.request_id == id {
            break h;
        }
    };
    let bob = link_of(&hook.json, "bob");
    let csrf = get(&s, &bob).hidden_input("csrf").unwrap();
    let answer = post_form(&s, &bob, &[("csrf", &csrf), ("decision", "approve")]);
    assert_eq!(answer.outcome(), Some("approved"), "{}", answer.body);
    assert_eq!(fate(agent.finish().0), "exit:0");
    let rows = s.daemon.approval_rows(id, 4);
    row(&rows, "approved", "approval 1 of 2");
    row(&rows, "approved", "quorum of 2 reached: alice, bob");

    // One denial is enough.
    let (agent, id) = start();
    s.daemon
        .json(&["approvals", "approve", &id.to_string(), "--json"]);
    s.daemon
        .json(&["approvals", "deny", &id.to_string(), "--json"]);
    assert_eq!(fate(agent.finish().0), "signal:9");
}

#[test]
fn agents_cannot_read_the_approval_secrets_configuration_or_state() {
    use interceptor_integration::{Backend, expected_backend, probe_bin, probe_value};
    let s = setup("channels-secrets", "60s");
    let files = [
        s.dir.join("hook.secret"),
        s.dir.join("slack.secret"),
        s.dir.join("approvals.toml"),
        s.dir.join("approvals.db"),
    ];
    for file in &files {
        let cmd = s.daemon.agent(
            "thief-bot",
            &probe_bin(),
            &["open", file.to_str().unwrap(), "r"],
        );
        let (_, out) = Spawned::start(cmd).finish();
        let got = probe_value(&out, "open").unwrap_or_else(|| panic!("no open= in {out:?}"));
        match expected_backend() {
            Backend::Lsm => assert_eq!(got, "errno:13", "{}", file.display()),
            // Opens are only observed there, never refused; the daemon says so.
            Backend::Tracepoint => assert_eq!(got, "ok", "{}", file.display()),
        }
    }
    if expected_backend() == Backend::Tracepoint {
        // No open hook there: nothing is refused or recorded, and the daemon says so.
        let status = s.daemon.json(&["status", "--json"]);
        let stated = status["guarantees"].as_array().unwrap().iter().any(|g| {
            g.as_str()
                .unwrap()
                .starts_with("NOT guaranteed: agents' opens are not checked")
        });
        assert!(stated, "{status}");
        return;
    }
    // Every attempt is in the log, refused under the rule that guards the daemon's files.
    let rows = s.daemon.wait_for("the refused opens in the audit log", || {
        let rows = s.daemon.audit_rows(&["--rule", "builtin:daemon-files"]);
        let text = serde_json::to_string(&rows).unwrap();
        files
            .iter()
            .all(|f| text.contains(f.to_str().unwrap()))
            .then_some(rows)
    });
    assert!(
        rows.iter().any(|r| r["outcome"] == "denied"),
        "denied rows: {rows:#?}"
    );
}

#[test]
fn an_unanswered_request_escalates_to_fallback_reviewers_who_can_answer() {
    let s = setup_with("channels-escalate", "60s", |dir| {
        let tool = dir.probe_copy("escalating-tool");
        format!(
            "\n[[rule]]\nname = \"escalating\"\noperation = \"exec\"\nbinary = \"{}\"\naction = \"ask\"\nreviewers = [\"alice\"]\nescalate_after = \"1s\"\nescalate_to = [\"bob\"]\n",
            tool.display()
        )
    });
    let marker = s.dir.join("escalated-ran");
    let agent = Spawned::start(s.daemon.agent(
        "ops-bot",
        &s.dir.join("escalating-tool"),
        &["touch", marker.to_str().unwrap()],
    ));
    let id = s.daemon.wait_pending(agent.pid())["id"].as_u64().unwrap();
    // First only alice is asked; a second message a second later brings bob's link alone.
    let first = delivery(&s, "/hook");
    assert_eq!(first.request_id, id);
    let reviewers = |c: &receiver::Checked| -> Vec<String> {
        c.json["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["reviewer"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(reviewers(&first), ["alice"]);
    let second = delivery(&s, "/hook");
    assert_eq!(second.request_id, id);
    assert_eq!(reviewers(&second), ["bob"]);
    let shown = s
        .daemon
        .json(&["approvals", "show", &id.to_string(), "--json"]);
    assert_eq!(
        shown["reviewers"],
        serde_json::json!(["alice", "bob"]),
        "{shown:#}"
    );
    let bob = link_of(&second.json, "bob");
    let csrf = get(&s, &bob).hidden_input("csrf").unwrap();
    let answer = post_form(&s, &bob, &[("csrf", &csrf), ("decision", "approve")]);
    assert_eq!(answer.outcome(), Some("approved"), "{}", answer.body);
    assert_eq!(fate(agent.finish().0), "exit:0");
    let rows = s.daemon.approval_rows(id, 5);
    let escalated = row(&rows, "escalated", "asked bob too");
    assert_eq!(escalated["event"]["reviewers"], serde_json::json!(["bob"]));
    assert_eq!(row(&rows, "approved", "")["event"]["by"], "bob");
}
