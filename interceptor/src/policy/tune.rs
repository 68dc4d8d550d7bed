//! `interceptor policy tune`: against approval fatigue, what each rule did over a period of
//! the audit log (how often it fired, asked, denied, would have asked in monitor mode, how
//! reviewers answered and how fast), and the changes the numbers support.
//!
//! Offline, like `interceptor audit`: reads the database directly and never creates one.
//! Every suggestion carries the counts behind it, and none is made below `--min-samples`.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::{Action, GrantScope, Mode, Policy, matcher::RuleMatcher};
use crate::audit::{
    ApprovalStep, AuditEvent, DecidedBy, Filter, Outcome, Store, StoreOptions, StoredRow,
    cli::DbArgs,
    query::{format_time, parse_time},
    record::now_ms,
};

/// Approvals of the same agent and command this close together form one cluster: what a
/// grant (`max_uses` within `max_ttl`) would have covered with one approval.
pub const GRANT_WINDOW_MS: i64 = 60 * 60 * 1000;

/// Arguments of `interceptor policy tune`.
#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// From this point: a duration back from now (7d, 24h) or a timestamp (2025-05-01).
    #[arg(long, default_value = "7d", value_name = "WHEN")]
    pub since: String,
    /// Before this point (same forms as --since) [default: now].
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only this agent's operations.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// The fewest answers (or would-be asks) a suggestion may rest on.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub min_samples: u64,
    /// The policy whose rules are tuned (their mode, and which never fired).
    /// Default: /etc/interceptor/policy.toml, else the built-in policy.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which rows to read and how much evidence a suggestion needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuneOptions {
    /// Unix ms, inclusive.
    pub since_ms: u64,
    /// Unix ms, exclusive.
    pub until_ms: Option<u64>,
    pub agent: Option<String>,
    pub min_samples: u64,
}

/// What one rule did over the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleStats {
    pub rule: String,
    /// Its mode in the policy tuned; `None` when the policy has no rule of that name.
    pub mode: Option<Mode>,
    /// Its action in the policy tuned.
    pub action: Option<Action>,
    /// Decisions that listed it among the matching rules.
    pub fired: u64,
    /// Enforced decisions it won.
    pub won: u64,
    /// Enforced decisions it won with `ask` (operations held for a reviewer).
    pub asked: u64,
    /// Enforced decisions it won with `deny`.
    pub denied: u64,
    /// Monitor mode: operations it would have held.
    pub would_ask: u64,
    /// Monitor mode: operations it would have refused.
    pub would_deny: u64,
    /// Reviewer answers to its asks.
    pub approved: u64,
    pub rejected: u64,
    /// Asks nobody answered in time.
    pub expired: u64,
    /// Answer times (approved or rejected), nearest rank: the sorted times at index
    /// round((n - 1) * q).
    pub answer_median_ms: Option<u64>,
    pub answer_p90_ms: Option<u64>,
    /// How many answers the times are over.
    pub answers_timed: u64,
}

/// The kind of change a suggestion proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuggestionKind {
    /// Reviewers approved every ask of one command: stop asking for it.
    Narrow,
    /// Reviewers approved the same command for the same agent again and again within an
    /// hour: one approval could have covered them.
    Grant,
    /// A monitor rule would have held operations: what enforcing it would cost.
    Monitor,
    /// No decision matched the rule in the period.
    NeverFired,
}

impl SuggestionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SuggestionKind::Narrow => "narrow",
            SuggestionKind::Grant => "grant",
            SuggestionKind::Monitor => "monitor",
            SuggestionKind::NeverFired => "never-fired",
        }
    }
}

/// One change the numbers support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    pub rule: String,
    pub kind: SuggestionKind,
    /// What was seen, with the counts.
    pub summary: String,
    /// The operations it rests on.
    pub samples: u64,
    /// Ready to paste into the rule, when there is a concrete change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toml: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TuneReport {
    pub since_ms: u64,
    pub until_ms: Option<u64>,
    pub agent: Option<String>,
    pub min_samples: u64,
    /// The policy tuned (its origin), when one was given.
    pub policy: Option<String>,
    /// Decision rows read (the first decision of each operation; answers excluded).
    pub decisions: u64,
    /// Operations held for a reviewer (enforced asks).
    pub requests: u64,
    /// The policy's rules in file order, then rules seen only in the log.
    pub rules: Vec<RuleStats>,
    pub suggestions: Vec<Suggestion>,
}

/// An operation held for a reviewer, from its first decision to its answer.
#[derive(Debug, Clone)]
struct Story {
    rule: Option<String>,
    agent: String,
    binary: String,
    argv: Vec<String>,
    held_ms: i64,
    requested_ms: Option<i64>,
    answer: Option<Answer>,
}

#[derive(Debug, Clone, Copy)]
struct Answer {
    step: ApprovalStep,
    at_ms: i64,
    latency_ms: Option<u64>,
}

impl Story {
    /// From the request to the answer: the rows' times, else the reviewer's wait the
    /// daemon measured.
    fn answer_ms(&self) -> Option<u64> {
        let a = self.answer?;
        let start = self.requested_ms.unwrap_or(self.held_ms);
        match a.step {
            ApprovalStep::Approved | ApprovalStep::Denied => {}
            _ => return None,
        }
        if a.at_ms >= start && a.at_ms > 0 {
            Some((a.at_ms - start) as u64)
        } else {
            a.latency_ms
        }
    }
}

/// A monitor rule's would-be asks, kept to predict how reviewers would answer.
#[derive(Debug, Clone)]
struct Watched {
    rule: String,
    binary: String,
}

/// Builds the report from audit rows (any order; rows that are not decisions or approvals,
/// or lie outside the options' period or agent, are skipped).
pub fn tune(rows: &[StoredRow], policy: Option<&Policy>, opts: &TuneOptions) -> TuneReport {
    let mut sorted: Vec<&StoredRow> = rows
        .iter()
        .filter(|r| {
            let t = u64::try_from(r.time_ms).unwrap_or(0);
            t >= opts.since_ms && opts.until_ms.is_none_or(|u| t < u)
        })
        .filter(|r| {
            opts.agent
                .as_ref()
                .is_none_or(|a| r.columns.agent.as_ref() == Some(a))
        })
        .collect();
    sorted.sort_by_key(|r| r.seq);

    let mut stats: BTreeMap<String, RuleStats> = BTreeMap::new();
    let mut stories: BTreeMap<u64, Story> = BTreeMap::new();
    let mut held_by_request: HashMap<u64, u64> = HashMap::new();
    let mut watched: Vec<Watched> = Vec::new();
    let mut decisions = 0;

    for row in sorted {
        let Ok(event) = row.event() else { continue };
        let story_of = |ref_seq: Option<i64>, request: Option<u64>| {
            ref_seq
                .and_then(|s| u64::try_from(s).ok())
                .or_else(|| request.and_then(|r| held_by_request.get(&r).copied()))
        };
        match event {
            AuditEvent::Decision(d) => {
                let answer = match &d.decided_by {
                    DecidedBy::Reviewer(_) => Some(match d.outcome {
                        Outcome::Denied => ApprovalStep::Denied,
                        _ => ApprovalStep::Approved,
                    }),
                    DecidedBy::Timeout => Some(ApprovalStep::Expired),
                    DecidedBy::Kernel
                    | DecidedBy::Policy
                    | DecidedBy::DaemonDown
                    | DecidedBy::Grant(_) => None,
                };
                if let Some(step) = answer {
                    if let Some(story) =
                        story_of(row.ref_seq, d.request).and_then(|seq| stories.get_mut(&seq))
                    {
                        let latency_ms = d.latency_us.map(|l| l / 1000);
                        match &mut story.answer {
                            Some(a) => a.latency_ms = a.latency_ms.or(latency_ms),
                            None => {
                                story.answer = Some(Answer {
                                    step,
                                    at_ms: row.time_ms,
                                    latency_ms,
                                })
                            }
                        }
                    }
                    continue;
                }
                decisions += 1;
                for name in &d.matched_rules {
                    stat(&mut stats, name).fired += 1;
                }
                let Some(winner) = &d.winner else { continue };
                let s = stat(&mut stats, winner);
                if d.monitor {
                    match d.action {
                        Action::Ask => s.would_ask += 1,
                        Action::Deny => s.would_deny += 1,
                        Action::Allow | Action::Audit => {}
                    }
                    if d.action >= Action::Ask {
                        watched.push(Watched {
                            rule: winner.clone(),
                            binary: d.process.binary.clone(),
                        });
                    }
                    continue;
                }
                s.won += 1;
                match d.action {
                    Action::Ask => s.asked += 1,
                    Action::Deny => s.denied += 1,
                    Action::Allow | Action::Audit => {}
                }
                if d.outcome == Outcome::Held {
                    if let Some(r) = d.request {
                        held_by_request.insert(r, row.seq);
                    }
                    stories.insert(
                        row.seq,
                        Story {
                            rule: Some(winner.clone()),
                            agent: d.process.agent.clone(),
                            binary: d.process.binary.clone(),
                            argv: d.process.argv.clone(),
                            held_ms: row.time_ms,
                            requested_ms: None,
                            answer: None,
                        },
                    );
                }
            }
            AuditEvent::Approval(a) => {
                let Some(story) =
                    story_of(row.ref_seq, Some(a.request)).and_then(|seq| stories.get_mut(&seq))
                else {
                    continue;
                };
                match a.step {
                    ApprovalStep::Requested => story.requested_ms = Some(row.time_ms),
                    ApprovalStep::Approved | ApprovalStep::Denied | ApprovalStep::Expired => {
                        if story.answer.is_none() {
                            story.answer = Some(Answer {
                                step: a.step,
                                at_ms: row.time_ms,
                                latency_ms: None,
                            });
                        }
                    }
                    ApprovalStep::Notified
                    | ApprovalStep::Rejected
                    | ApprovalStep::Cancelled
                    | ApprovalStep::Escalated => {}
                }
            }
            _ => {}
        }
    }

    // Answers and their times, per rule.
    let mut times: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for story in stories.values() {
        let (Some(rule), Some(answer)) = (&story.rule, story.answer) else {
            continue;
        };
        let s = stat(&mut stats, rule);
        match answer.step {
            ApprovalStep::Approved => s.approved += 1,
            ApprovalStep::Denied => s.rejected += 1,
            ApprovalStep::Expired => s.expired += 1,
            _ => {}
        }
        if let Some(ms) = story.answer_ms() {
            times.entry(rule.clone()).or_default().push(ms);
        }
    }
    for (rule, mut t) in times {
        t.sort_unstable();
        let s = stat(&mut stats, &rule);
        s.answer_median_ms = Some(nearest_rank(&t, 0.5));
        s.answer_p90_ms = Some(nearest_rank(&t, 0.9));
        s.answers_timed = t.len() as u64;
    }

    // The policy's rules first, in file order, with their mode; then the log's others.
    let mut rules = Vec::new();
    if let Some(p) = policy {
        for r in &p.rules {
            let mut s = stats.remove(&r.name).unwrap_or_else(|| RuleStats {
                rule: r.name.clone(),
                ..RuleStats::default()
            });
            s.mode = Some(r.mode);
            s.action = Some(r.action);
            rules.push(s);
        }
    }
    rules.extend(stats.into_values());

    let stories: Vec<Story> = stories.into_values().collect();
    let mut suggestions = Vec::new();
    for s in &rules {
        let rule = policy.and_then(|p| p.rule_named(&s.rule)).map(|(_, r)| r);
        suggestions.extend(narrow(s, rule, &stories, opts.min_samples));
        suggestions.extend(grant(s, rule, &stories, opts.min_samples));
        suggestions.extend(monitor(s, &watched, &stories, opts.min_samples));
        if s.fired == 0 && s.mode.is_some() {
            suggestions.push(Suggestion {
                rule: s.rule.clone(),
                kind: SuggestionKind::NeverFired,
                summary: format!(
                    "no decision matched it in the period ({decisions} decisions read): check that it names what it should, or remove it"
                ),
                samples: decisions,
                toml: None,
            });
        }
    }

    TuneReport {
        since_ms: opts.since_ms,
        until_ms: opts.until_ms,
        agent: opts.agent.clone(),
        min_samples: opts.min_samples,
        policy: policy.map(|p| p.origin.clone()),
        decisions,
        requests: stories.len() as u64,
        rules,
        suggestions,
    }
}

fn stat<'a>(stats: &'a mut BTreeMap<String, RuleStats>, name: &str) -> &'a mut RuleStats {
    stats.entry(name.to_string()).or_insert_with(|| RuleStats {
        rule: name.to_string(),
        ..RuleStats::default()
    })
}

/// The value at index round((n - 1) * q) of sorted values (as `audit evidence` does).
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `1.5s`, `42s`, `3m 20s`, `2h 5m`.
pub fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..10 => format!("{:.1}s", ms as f64 / 1000.0),
        10..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// The first argument after argv[0]: the subcommand, for most tools (`git push`).
fn first_arg(argv: &[String]) -> Option<&str> {
    argv.get(1).map(String::as_str)
}

/// Counts of answers for a group of stories.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    approved: u64,
    rejected: u64,
    expired: u64,
}

impl Tally {
    fn add(&mut self, story: &Story) {
        match story.answer.map(|a| a.step) {
            Some(ApprovalStep::Approved) => self.approved += 1,
            Some(ApprovalStep::Denied) => self.rejected += 1,
            Some(ApprovalStep::Expired) => self.expired += 1,
            _ => {}
        }
    }

    fn always_approved(&self, min: u64) -> bool {
        self.approved >= min.max(1) && self.rejected == 0 && self.expired == 0
    }
}

/// Reviewers approved every ask of one (binary, first argument) at least `min` times:
/// stop asking for it. An `allow` rule cannot do that (the most restrictive rule wins), so
/// the rule itself is narrowed with `argv_not_regex`.
fn narrow(
    s: &RuleStats,
    rule: Option<&super::Rule>,
    stories: &[Story],
    min: u64,
) -> Vec<Suggestion> {
    let mut groups: BTreeMap<(String, Option<String>), Tally> = BTreeMap::new();
    let mut all = Tally::default();
    for story in stories
        .iter()
        .filter(|st| st.rule.as_deref() == Some(&s.rule))
    {
        all.add(story);
        groups
            .entry((
                story.binary.clone(),
                first_arg(&story.argv).map(str::to_string),
            ))
            .or_default()
            .add(story);
    }
    let mut out = Vec::new();
    let mut best: Vec<(&(String, Option<String>), &Tally)> = groups
        .iter()
        .filter(|(_, t)| t.always_approved(min))
        .collect();
    best.sort_by(|a, b| b.1.approved.cmp(&a.1.approved).then(a.0.cmp(b.0)));
    let existing: Vec<String> = match rule.map(|r| &r.matcher) {
        Some(RuleMatcher::Exec(m)) => m.spec.argv_not_regex.clone(),
        _ => Vec::new(),
    };
    let exec_rule = !matches!(rule.map(|r| &r.matcher), Some(RuleMatcher::Open(_)));
    if let Some(((binary, arg), tally)) = best.first() {
        let command = match arg {
            Some(a) => format!("{} {a}", binary.rsplit('/').next().unwrap_or(binary)),
            None => binary.clone(),
        };
        let everything = all.always_approved(min) && groups.len() == 1;
        let toml = exec_rule.then(|| {
            let pattern = match arg {
                Some(a) => format!("^{}( |$)", regex::escape(a)),
                None => "^$".to_string(),
            };
            let mut list = existing.clone();
            list.push(pattern);
            let value = toml::Value::Array(list.into_iter().map(toml::Value::String).collect());
            format!(
                "# in [[rule]] name = {:?}: stop asking for `{command}`\nargv_not_regex = {value}",
                s.rule
            )
        });
        out.push(Suggestion {
            rule: s.rule.clone(),
            kind: SuggestionKind::Narrow,
            summary: format!(
                "reviewers approved `{command}` every time: {} of {} asks{}{}; {}",
                tally.approved,
                tally.approved + tally.rejected + tally.expired,
                s.answer_median_ms
                    .map_or(String::new(), |m| format!(", rule's median answer {}", human_ms(m))),
                if everything {
                    " (every ask of this rule)"
                } else {
                    ""
                },
                if exec_rule {
                    "an allow rule cannot override an ask (the most restrictive rule wins), so narrow this rule"
                } else {
                    "consider a narrower path or a grant"
                }
            ),
            samples: tally.approved,
            toml,
        });
    }
    out
}

/// The largest cluster of approvals of one agent's identical command within
/// [`GRANT_WINDOW_MS`] of each other; at least `min` approvals: a grant would have covered
/// them with one.
fn grant(
    s: &RuleStats,
    rule: Option<&super::Rule>,
    stories: &[Story],
    min: u64,
) -> Option<Suggestion> {
    if rule
        .and_then(|r| r.grant.as_ref())
        .is_some_and(|g| g.scope != GrantScope::Once)
    {
        return None;
    }
    // (agent, binary, argv) -> request times.
    type Command<'a> = (&'a str, &'a str, &'a [String]);
    let mut same: BTreeMap<Command, Vec<i64>> = BTreeMap::new();
    for story in stories.iter().filter(|st| {
        st.rule.as_deref() == Some(&s.rule)
            && st.answer.is_some_and(|a| a.step == ApprovalStep::Approved)
    }) {
        same.entry((&story.agent, &story.binary, &story.argv))
            .or_default()
            .push(story.requested_ms.unwrap_or(story.held_ms));
    }
    // (command, approvals in the cluster, its span in ms)
    let mut best: Option<(Command, usize, i64)> = None;
    for (key, mut at) in same {
        at.sort_unstable();
        let mut start = 0;
        for i in 0..at.len() {
            if i > 0 && at[i] - at[i - 1] > GRANT_WINDOW_MS {
                start = i;
            }
            let size = i - start + 1;
            let span = at[i] - at[start];
            if best.is_none_or(|(_, n, _)| size > n) {
                best = Some((key, size, span));
            }
        }
    }
    let ((agent, binary, argv), size, span) = best?;
    if (size as u64) < min.max(2) {
        return None;
    }
    let ttl_min = (span / 60_000 + 1).max(5);
    Some(Suggestion {
        rule: s.rule.clone(),
        kind: SuggestionKind::Grant,
        summary: format!(
            "agent {agent} was approved {size} times for `{}` within {} (each less than an hour after the last): one approval with a grant would have covered them",
            crate::cli::shell_words(argv),
            human_ms(span as u64),
        ),
        samples: size as u64,
        toml: Some(format!(
            "# in [[rule]] name = {:?} ({binary})\ngrant = {{ scope = \"exact-argv\", max_uses = {size}, max_ttl = \"{ttl_min}m\" }}",
            s.rule
        )),
    })
}

/// What enforcing a monitor rule would cost: its would-be asks, and how reviewers
/// answered enforced asks of the same programs.
fn monitor(s: &RuleStats, watched: &[Watched], stories: &[Story], min: u64) -> Option<Suggestion> {
    let would = s.would_ask + s.would_deny;
    if would == 0 {
        return None;
    }
    let mine: Vec<&Watched> = watched.iter().filter(|w| w.rule == s.rule).collect();
    let mut programs: Vec<&str> = mine.iter().map(|w| w.binary.as_str()).collect();
    programs.sort_unstable();
    programs.dedup();
    let mut peers = Tally::default();
    for st in stories
        .iter()
        .filter(|st| programs.contains(&st.binary.as_str()))
    {
        peers.add(st);
    }
    let answered = peers.approved + peers.rejected + peers.expired;
    let head = format!(
        "monitor mode: would have asked {} and denied {} time(s), over {} program(s)",
        s.would_ask,
        s.would_deny,
        programs.len()
    );
    let summary = if s.would_ask > 0 && peers.always_approved(min) {
        format!(
            "{head}; reviewers approved all {} enforced asks of the same programs, so enforcing it as is would likely add {} rubber-stamp approvals: narrow it first",
            peers.approved, s.would_ask
        )
    } else if answered >= min && peers.rejected + peers.expired > 0 {
        format!(
            "{head}; reviewers answered {answered} enforced asks of the same programs: {} approved, {} rejected, {} expired",
            peers.approved, peers.rejected, peers.expired
        )
    } else if would >= min {
        format!(
            "{head}; reviewers have answered fewer than {min} asks of these programs, so there is nothing to predict their answers from"
        )
    } else {
        format!("{head}: fewer than {min} samples, keep watching")
    };
    Some(Suggestion {
        rule: s.rule.clone(),
        kind: SuggestionKind::Monitor,
        summary,
        samples: would,
        toml: None,
    })
}

/// Reads the rows of the period from an open store.
pub async fn read_rows(store: &Store, opts: &TuneOptions) -> anyhow::Result<Vec<StoredRow>> {
    let filter = Filter {
        since_ms: Some(opts.since_ms),
        until_ms: opts.until_ms,
        agent: opts.agent.clone(),
        kinds: vec!["decision".into(), "approval".into()],
        ..Filter::default()
    };
    Ok(store.query(&filter).await?)
}

/// Runs `interceptor policy tune`.
pub fn run(args: TuneArgs) -> anyhow::Result<ExitCode> {
    print!("{}", output(&args, now_ms())?);
    Ok(ExitCode::SUCCESS)
}

/// What `interceptor policy tune` prints: the table, or JSON with `--json`.
pub fn output(args: &TuneArgs, now: u64) -> anyhow::Result<String> {
    let opts = TuneOptions {
        since_ms: parse_time(&args.since, now).map_err(|e| anyhow::anyhow!("--since: {e}"))?,
        until_ms: args
            .until
            .as_deref()
            .map(|t| parse_time(t, now).map_err(|e| anyhow::anyhow!("--until: {e}")))
            .transpose()?,
        agent: args.agent.clone(),
        min_samples: args.min_samples,
    };
    let policy = super::cli::active_policy(args.policy.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let rows = runtime.block_on(async {
        let mut store_opts = StoreOptions::new(args.db.target());
        // A typo must not create an empty log.
        store_opts.create = false;
        let store = Store::open(&store_opts).await?;
        let rows = read_rows(&store, &opts).await;
        store.close().await;
        rows
    })?;
    let report = tune(&rows, Some(&policy), &opts);
    Ok(if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        render(&report)
    })
}

/// The report as a table and a list of suggestions.
pub fn render(r: &TuneReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "period:   {} .. {}{}",
        format_time(r.since_ms as i64),
        r.until_ms
            .map_or("now".to_string(), |u| format_time(u as i64)),
        r.agent
            .as_ref()
            .map_or(String::new(), |a| format!(", agent {a}"))
    );
    if let Some(p) = &r.policy {
        let _ = writeln!(out, "policy:   {p}");
    }
    let _ = writeln!(
        out,
        "read:     {} decisions, {} held for a reviewer",
        r.decisions, r.requests
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<28} {:<7} {:>5} {:>4} {:>5} {:>6} {:>9} {:>10} {:>8} {:>8} {:>7} {:>8} {:>8}",
        "RULE",
        "MODE",
        "FIRED",
        "WON",
        "ASKED",
        "DENIED",
        "WOULD-ASK",
        "WOULD-DENY",
        "APPROVED",
        "REJECTED",
        "EXPIRED",
        "MEDIAN",
        "P90"
    );
    for s in &r.rules {
        let time = |t: Option<u64>| t.map_or("-".to_string(), human_ms);
        let _ = writeln!(
            out,
            "{:<28} {:<7} {:>5} {:>4} {:>5} {:>6} {:>9} {:>10} {:>8} {:>8} {:>7} {:>8} {:>8}",
            s.rule,
            s.mode.map_or("(gone)", Mode::as_str),
            s.fired,
            s.won,
            s.asked,
            s.denied,
            s.would_ask,
            s.would_deny,
            s.approved,
            s.rejected,
            s.expired,
            time(s.answer_median_ms),
            time(s.answer_p90_ms)
        );
    }
    let _ = writeln!(out);
    if r.suggestions.is_empty() {
        let _ = writeln!(
            out,
            "suggestions: none (each needs at least {} samples)",
            r.min_samples
        );
    } else {
        let _ = writeln!(out, "suggestions:");
        for s in &r.suggestions {
            let _ = writeln!(out, "  - {} [{}]: {}", s.rule, s.kind.as_str(), s.summary);
            if let Some(t) = &s.toml {
                for line in t.lines() {
                    let _ = writeln!(out, "        {line}");
                }
            }
        }
    }
    out
}
