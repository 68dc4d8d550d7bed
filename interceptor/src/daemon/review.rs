//! The daemon's side of approvals: who may answer a request, the request's persistent
//! record and review links, the notice every channel renders, and the three ways an answer
//! arrives besides the control socket — the review page (`/r/{token}`) and Slack's
//! interactivity endpoint — each authenticated before it reaches [`Daemon::decide`].
//!
//! Identity, by channel:
//! - control socket: the caller's uid (SO_PEERCRED) must be a configured reviewer's, and
//!   the caller must not be inside an agent's process tree;
//! - review page: the token in the link is the reviewer's own (one per reviewer per
//!   request, stored hashed); only a POST carrying the page's CSRF token decides;
//! - Slack: the request must carry Slack's signature (signing secret, 5-minute window,
//!   each signature accepted once) and the clicking Slack user must be a configured
//!   reviewer of the request.
//!
//! Every refusal is recorded as an approval `rejected` row saying why.

use std::collections::HashMap;

use axum::http::HeaderMap;

use super::*;
use crate::approvals::{
    GrantOffer, Notice, ReviewLink,
    config::ApprovalsConfig,
    page::{self, FormDecision, OutcomeKind, ReviewPage},
    slack,
    store::{ApprovalStore, Closing, NewRequest, RequestState, StoredRequest},
    token::{self, Token, TokenHash},
};
use crate::http::Page;

/// How a decision reached the daemon.
#[derive(Debug, Clone)]
pub(super) struct Via {
    /// `cli`, `page`, `slack`.
    pub channel: &'static str,
    pub comment: Option<String>,
    /// The review link's token, consumed with the decision.
    pub token: Option<TokenHash>,
}

impl Via {
    pub(super) fn cli(comment: Option<String>) -> Self {
        Self {
            channel: "cli",
            comment,
            token: None,
        }
    }
}

/// Approvals configuration and state the daemon holds.
pub(super) struct Approvals {
    pub config: ApprovalsConfig,
    pub store: ApprovalStore,
    pub notifier: Option<crate::approvals::notify::Notifier>,
    /// Review links start with this (no trailing slash); `None`: no listener, no links.
    pub base_url: Option<String>,
    pub host: String,
    /// Slack signatures already accepted, with their timestamps (a replay is refused).
    slack_seen: Mutex<HashMap<String, u64>>,
    /// Requests restored from the store at startup, waiting for their held task.
    restored: Mutex<Vec<StoredRequest>>,
}

impl Approvals {
    pub(super) fn new(
        config: ApprovalsConfig,
        store: ApprovalStore,
        http_addr: Option<std::net::SocketAddr>,
    ) -> Self {
        let base_url = config
            .public_url
            .clone()
            .or_else(|| http_addr.map(|a| format!("http://{a}")));
        let notifier = match crate::approvals::notify::Notifier::new(config.delivery) {
            Ok(n) => Some(n),
            Err(e) => {
                error!(error = %e, "notifications are off: the HTTP client could not be built");
                None
            }
        };
        Self {
            config,
            store,
            notifier,
            base_url,
            host: procfs::hostname(),
            slack_seen: Mutex::new(HashMap::new()),
            restored: Mutex::new(Vec::new()),
        }
    }
}

/// A request about to be created.
pub(super) struct NewAsk<'a> {
    pub view: &'a PendingView,
    pub decision: &'a DecisionAudit,
    pub rule: Option<&'a crate::policy::Rule>,
    pub start_ticks: u64,
    pub timeout: Duration,
    pub on_timeout: Action,
}

/// A created request: its id, who may answer, and the notice with their links.
pub(super) struct Asked {
    pub id: u64,
    pub reviewers: Vec<String>,
    pub notice: Notice,
    pub grant_offer: Option<GrantOffer>,
}

impl Daemon {
    /// Who may answer a request of `rule`: its reviewers (groups expanded), else the
    /// policy's default reviewers, else every configured reviewer; only configured
    /// reviewers can answer, so names the configuration lacks are left out (and logged).
    pub(super) fn request_reviewers(
        &self,
        policy: &Policy,
        rule: Option<&crate::policy::Rule>,
    ) -> Vec<String> {
        let config = &self.approvals.config;
        let named = rule
            .map(|r| r.reviewers.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| policy.defaults.reviewers.clone());
        if named.is_empty() {
            return config.reviewers.iter().map(|r| r.name.clone()).collect();
        }
        let names = self.configured_reviewers(policy, &named, rule.map(|r| r.name.as_str()));
        if names.is_empty() {
            error!(rule = ?rule.map(|r| &r.name),
                   "no configured reviewer may answer this rule's requests: they will time out");
        }
        names
    }

    /// `named` (names or `@group`), groups expanded, sorted, limited to configured
    /// reviewers (the others are logged: they could not authenticate).
    fn configured_reviewers(
        &self,
        policy: &Policy,
        named: &[String],
        rule: Option<&str>,
    ) -> Vec<String> {
        let config = &self.approvals.config;
        let mut names = Vec::new();
        for name in named {
            match name.strip_prefix('@') {
                Some(group) => names.extend(policy.groups.get(group).cloned().unwrap_or_default()),
                None => names.push(name.clone()),
            }
        }
        names.sort();
        names.dedup();
        let unknown = config.unknown_reviewers(names.iter().map(String::as_str));
        if !unknown.is_empty() {
            warn!(?rule, ?unknown, approvals = %config.origin,
                  "reviewers named by the policy are not configured: they cannot answer");
        }
        names.retain(|n| config.reviewer(n).is_some());
        names
    }

    /// Nobody answered for the rule's `escalate_after`: its `escalate_to` reviewers get
    /// their own tokens and are notified on every channel (their links only); the request
    /// keeps its deadline.
    pub(super) async fn escalate(self: &Arc<Self>, id: u64) {
        let taken = {
            let mut state = lock(&self.state);
            state.pending.get_mut(&id).and_then(|p| {
                let (_, to) = p.escalation.take()?;
                Some((
                    to,
                    p.reviewers.clone(),
                    p.decision.clone(),
                    p.decision_seq,
                    p.notice.clone(),
                    p.held_at,
                ))
            })
        };
        let Some((to, existing, decision, seq, mut notice, held_at)) = taken else {
            return;
        };
        let active = self.active();
        let mut added = self.configured_reviewers(&active.policy, &to, decision.winner.as_deref());
        added.retain(|n| !existing.contains(n));
        let waited = humantime::format_duration(Duration::from_secs(held_at.elapsed().as_secs()));
        let mut row = approval_row(id, ApprovalStep::Escalated, &decision, None);
        row.reviewers = added.clone();
        row.detail = Some(if added.is_empty() {
            format!(
                "nobody answered within {waited}; escalate_to names no further configured reviewer"
            )
        } else {
            format!(
                "nobody answered within {waited}; asked {} too",
                added.join(", ")
            )
        });
        let (tokens, hashes) = match issue_tokens(&added) {
            Ok(issued) => issued,
            Err(e) => {
                error!(id, error = %e, "escalation: no review tokens");
                return;
            }
        };
        if !tokens.is_empty() {
            match self.approvals.store.add_tokens(id, &hashes).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    error!(id, error = %e, "escalation: the new reviewers' tokens were not stored");
                    return;
                }
            }
        }
        {
            let mut state = lock(&self.state);
            let Some(p) = state.pending.get_mut(&id) else {
                return;
            };
            for reviewer in &added {
                p.reviewers.push(reviewer.clone());
                p.notice.links.push(ReviewLink {
                    reviewer: reviewer.clone(),
                    url: String::new(),
                });
            }
        }
        warn!(id, reviewers = ?added, "request escalated: nobody answered in time");
        if let Err(e) = self
            .append_all(vec![follow(AuditEvent::Approval(row), seq)])
            .await
        {
            error!(id, error = %e, "an escalation was not recorded in the audit log");
        }
        if added.is_empty() {
            return;
        }
        notice.links = self.review_links(&tokens);
        self.notify(notice, decision, seq);
    }

    /// Persists a new request with one review token per reviewer, and returns the notice
    /// with each reviewer's link. Nothing has been sent anywhere yet.
    pub(super) async fn create_ask(&self, ask: NewAsk<'_>) -> Result<Asked, String> {
        let active = self.active();
        let reviewers = self.request_reviewers(&active.policy, ask.rule);
        let (tokens, hashes) = issue_tokens(&reviewers)?;
        let now = now_ms();
        let deadline_ms = now.saturating_add(ask.timeout.as_millis() as u64);
        let grant_offer = ask.rule.and_then(|r| r.grant.as_ref()).map(|g| GrantOffer {
            max_ttl_secs: g
                .max_ttl
                .map_or(GrantTerms::MAX_TTL.as_secs(), |d| d.as_secs().max(1)),
            max_uses: g.max_uses.unwrap_or(GrantTerms::MAX_USES),
        });
        let rationale = self.rationale_for(&super::identity(
            &ask.view.agent,
            ask.view.session.as_deref(),
        ));
        let mut notice = Notice {
            id: 0,
            host: self.approvals.host.clone(),
            agent: ask.view.agent.clone(),
            session: ask.view.session.clone(),
            operation: ask.view.operation.clone(),
            access: ask.view.access.clone(),
            pid: ask.view.pid,
            uid: ask.view.uid,
            user: procfs::user_name(ask.view.uid),
            target: ask.view.filename.clone(),
            exe: ask.view.exe.clone(),
            argv: ask.view.argv.clone(),
            cwd: ask.view.cwd.clone(),
            env: ask.view.env.clone(),
            parents: ask.view.parents.clone(),
            recent: ask.view.recent.clone(),
            rationale,
            rule: ask.view.rule.clone(),
            reason: ask.view.reason.clone(),
            controls: ask.decision.controls.clone(),
            severity: ask
                .rule
                .and_then(|r| r.severity)
                .map(|s| format!("{s:?}").to_lowercase()),
            requested_at_ms: ask.view.held_at_ms,
            deadline_ms,
            on_timeout: ask.on_timeout.to_string(),
            grant: grant_offer,
            // Kept in the store without their secrets: the names say who may answer.
            links: reviewers
                .iter()
                .map(|r| ReviewLink {
                    reviewer: r.clone(),
                    url: String::new(),
                })
                .collect(),
        };
        let new = NewRequest {
            pid: ask.view.pid,
            start_ticks: ask.start_ticks,
            operation: ask.view.operation.clone(),
            created_ms: now,
            deadline_ms,
            on_timeout: ask.on_timeout.to_string(),
        };
        let id = self
            .approvals
            .store
            .create(&new, &hashes, |id| {
                notice.id = id;
                serde_json::to_string(&notice).unwrap_or_default()
            })
            .await
            .map_err(|e| format!("approval store: {e}"))?;
        notice.id = id;
        notice.links = self.review_links(&tokens);
        Ok(Asked {
            id,
            reviewers,
            notice,
            grant_offer,
        })
    }

    /// Each reviewer's personal link for their token (none without a listener or
    /// `public_url`).
    fn review_links(&self, tokens: &[(String, Token)]) -> Vec<ReviewLink> {
        let Some(base) = &self.approvals.base_url else {
            return Vec::new();
        };
        tokens
            .iter()
            .map(|(reviewer, token)| ReviewLink {
                reviewer: reviewer.clone(),
                url: format!("{base}/r/{}", token.as_str()),
            })
            .collect()
    }

    /// Sends the notice on every configured channel, concurrently, recording one
    /// `notified` row per channel (delivered or not, with attempts and status).
    pub(super) fn notify(
        self: &Arc<Self>,
        notice: Notice,
        decision: DecisionAudit,
        seq: Option<u64>,
    ) {
        let channels = self.approvals.config.channels.clone();
        if channels.is_empty() {
            return;
        }
        let Some(notifier) = self.approvals.notifier.clone() else {
            return;
        };
        let notice = Arc::new(notice);
        for channel in channels {
            let daemon = self.clone();
            let notice = notice.clone();
            let decision = decision.clone();
            let notifier = notifier.clone();
            tokio::spawn(async move {
                let delivery = notifier.deliver(&channel, &notice).await;
                let mut row = approval_row(notice.id, ApprovalStep::Notified, &decision, None);
                row.channel = Some(channel.name.clone());
                row.detail = Some(delivery.summary());
                if delivery.delivered {
                    info!(id = notice.id, channel = %channel.name, attempts = delivery.attempts,
                          elapsed_ms = delivery.elapsed.as_millis() as u64, "reviewers notified");
                } else {
                    warn!(id = notice.id, channel = %channel.name, attempts = delivery.attempts,
                          error = ?delivery.error, status = ?delivery.status, "notification not delivered");
                }
                if let Err(e) = daemon
                    .append_all(vec![follow(AuditEvent::Approval(row), seq)])
                    .await
                {
                    error!(id = notice.id, error = %e, "a notification was not recorded in the audit log");
                }
            });
        }
    }

    /// The configured reviewer a control-socket caller acts as. Refuses callers inside an
    /// agent's process tree and uids no reviewer has.
    pub(super) fn authorize_reviewer(&self, peer: UCred) -> Result<String, String> {
        let (pid, start_ticks) = peer_process(peer)?;
        if let Some(agent_id) = self.tracked_agent(pid, start_ticks) {
            let agent = self.agent_name(agent_id);
            warn!(pid, agent = %agent, "refused a control request from inside an agent's process tree");
            return Err(format!(
                "refused: the caller (pid {pid}) belongs to agent {agent}; agents cannot list or decide approvals"
            ));
        }
        let config = &self.approvals.config;
        match config.reviewers_for_uid(peer.uid()).first() {
            Some(r) => Ok(r.name.clone()),
            None => Err(format!(
                "refused: uid {} is not a configured reviewer (approvals config: {}); \
                 add it to a [[reviewer]]'s uids",
                peer.uid(),
                config.origin
            )),
        }
    }

    /// [`Daemon::authorize_reviewer`] for an answer to request `id`; a refusal is recorded
    /// (an agent trying to approve itself is exactly what the log must show).
    pub(super) async fn authorize_decision(&self, id: u64, peer: UCred) -> Result<String, String> {
        match self.authorize_reviewer(peer) {
            Ok(reviewer) => Ok(reviewer),
            Err(why) => {
                let who = format!(
                    "uid:{} pid:{}",
                    peer.uid(),
                    peer.pid().map_or_else(|| "?".into(), |p| p.to_string())
                );
                self.record_refusal(Some(id), "cli", Some(&who), &why).await;
                Err(why)
            }
        }
    }

    /// Records a refused answer: who tried, through what, and why.
    pub(super) async fn record_refusal(
        &self,
        request: Option<u64>,
        channel: &str,
        by: Option<&str>,
        why: &str,
    ) {
        let id = request.unwrap_or(0);
        let template = {
            let state = lock(&self.state);
            state
                .pending
                .get(&id)
                .map(|p| approval_row(id, ApprovalStep::Rejected, &p.decision, None))
                .or_else(|| state.closed.get(&id).map(|c| c.row.clone()))
        };
        let mut row = template.unwrap_or(ApprovalAudit {
            request: id,
            step: ApprovalStep::Rejected,
            operation: crate::policy::Operation::Exec,
            agent: String::new(),
            pid: 0,
            binary: String::new(),
            path: None,
            rule: None,
            controls: Vec::new(),
            reviewers: Vec::new(),
            channel: None,
            by: None,
            detail: None,
        });
        row.step = ApprovalStep::Rejected;
        row.channel = Some(channel.to_string());
        row.by = by.map(str::to_string);
        row.detail = Some(why.to_string());
        warn!(request = id, channel, by = ?by, "answer refused: {why}");
        if let Err(e) = self
            .append_all(vec![NewEntry::now(AuditEvent::Approval(row))])
            .await
        {
            error!(request = id, error = %e, "a refused answer was not recorded in the audit log");
        }
    }

    /// Marks a request closed in the store (the audit log already says how).
    pub(super) async fn store_close(
        &self,
        id: u64,
        state: RequestState,
        decided_by: &str,
        via: Option<&Via>,
    ) {
        let closing = Closing {
            state,
            decided_by,
            channel: via.map_or("daemon", |v| v.channel),
            comment: via.and_then(|v| v.comment.as_deref()),
            now_ms: now_ms(),
            token: via.and_then(|v| v.token),
        };
        match self.approvals.store.finish(id, &closing).await {
            Ok(true) => {}
            Ok(false) => debug!(id, "request was already closed in the approval store"),
            Err(e) => error!(id, error = %e, "the approval store could not close a request"),
        }
    }

    // ---------------------------------------------------------------- the review page

    /// `GET /r/{token}`: the page, or why there is none. Never decides.
    pub(super) async fn page_show(&self, presented: &str) -> Page {
        let (hash, id, reviewer) = match self.page_token(presented, false).await {
            Ok(found) => found,
            Err(page) => return page,
        };
        let view = {
            let state = lock(&self.state);
            state
                .pending
                .get(&id)
                .map(|p| (p.notice.clone(), p.needed, p.approvals.len()))
        };
        let Some((notice, needed, so_far)) = view else {
            return self.closed_page(id, None).await;
        };
        let csrf = token::csrf(self.approvals.store.csrf_key(), &hash);
        let action = format!("/r/{presented}");
        let html = page::render_review(&ReviewPage {
            notice: &notice,
            reviewer: &reviewer,
            csrf: &csrf,
            action: &action,
            now_ms: now_ms(),
            approvals_needed: needed,
            approvals_so_far: so_far as u32,
        });
        Page::html(200, html)
    }

    /// `POST /r/{token}`: a reviewer's answer from the page's form.
    pub(super) async fn page_answer(&self, presented: &str, body: &[u8]) -> Page {
        let (hash, id, reviewer) = match self.page_token(presented, true).await {
            Ok(found) => found,
            Err(page) => return page,
        };
        let form = match page::parse_form(body) {
            Ok(form) => form,
            Err(e) => {
                self.record_refusal(
                    Some(id),
                    "page",
                    Some(&reviewer),
                    &format!("malformed review form: {e}"),
                )
                .await;
                return outcome(OutcomeKind::BadForm, &e.to_string());
            }
        };
        if !token::csrf_ok(self.approvals.store.csrf_key(), &hash, &form.csrf) {
            self.record_refusal(
                Some(id),
                "page",
                Some(&reviewer),
                "the form's CSRF token does not match its link",
            )
            .await;
            return outcome(OutcomeKind::Forbidden, "");
        }
        let offer = lock(&self.state).pending.get(&id).map(|p| p.grant_offer);
        let Some(offer) = offer else {
            return self.closed_page(id, Some(&reviewer)).await;
        };
        let (decision, grant) = match form.decision {
            FormDecision::Approve => (Decision::Approved, None),
            FormDecision::Deny => (Decision::Denied, None),
            FormDecision::ApproveGrant { minutes, uses } => {
                match grant_within(offer, minutes, uses) {
                    Ok(terms) => (Decision::Approved, Some(terms)),
                    Err(why) => {
                        self.record_refusal(Some(id), "page", Some(&reviewer), &why)
                            .await;
                        return outcome(OutcomeKind::BadForm, &why);
                    }
                }
            }
        };
        let via = Via {
            channel: "page",
            comment: form.comment.clone(),
            token: Some(hash),
        };
        let granted = grant.is_some();
        match self
            .decide(
                id,
                decision,
                grant.unwrap_or_default(),
                granted,
                reviewer.clone(),
                via,
            )
            .await
        {
            Ok(Response::Decided { .. }) => {
                let kind = match (decision, granted) {
                    (Decision::Denied, _) => OutcomeKind::Denied,
                    (Decision::Approved, true) => OutcomeKind::ApprovedWithGrant,
                    (Decision::Approved, false) => OutcomeKind::Approved,
                };
                outcome(kind, &format!("Request {id}, as {reviewer}."))
            }
            Ok(Response::Voted { have, need, .. }) => outcome(
                OutcomeKind::Approved,
                &format!(
                    "Request {id}: your approval is {have} of the {need} it needs; the operation waits for the rest."
                ),
            ),
            Ok(_) => outcome(OutcomeKind::Error, ""),
            Err(message)
                if message.contains("is closed") || message.contains("no pending request") =>
            {
                self.closed_page(id, None).await
            }
            Err(message) => outcome(OutcomeKind::Error, &message),
        }
    }

    /// The token's request and reviewer, or the page that refuses it (recorded). `answering`:
    /// a POST (a closed request's refusal is then a refused answer; a GET only looked).
    async fn page_token(
        &self,
        presented: &str,
        answering: bool,
    ) -> Result<(TokenHash, u64, String), Page> {
        let channel = if answering { "page" } else { "page (view)" };
        let Some(hash) = token::parse(presented) else {
            self.record_refusal(None, channel, None, "malformed review link")
                .await;
            return Err(outcome(OutcomeKind::InvalidLink, ""));
        };
        let record = match self.approvals.store.token(&hash).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.record_refusal(
                    None,
                    channel,
                    None,
                    "unknown review link (forged, or from another host)",
                )
                .await;
                return Err(outcome(OutcomeKind::InvalidLink, ""));
            }
            Err(e) => {
                error!(error = %e, "approval store lookup failed");
                return Err(outcome(OutcomeKind::Error, ""));
            }
        };
        let id = record.request.id;
        if record.used_ms.is_some() {
            self.record_refusal(
                Some(id),
                channel,
                Some(&record.reviewer),
                "review link already used (replayed)",
            )
            .await;
            return Err(outcome(
                OutcomeKind::AlreadyDecided,
                "This link was already used.",
            ));
        }
        if record.request.state != RequestState::Pending {
            let by = answering.then_some(record.reviewer.as_str());
            return Err(self.closed_page(id, by).await);
        }
        Ok((hash, id, record.reviewer))
    }

    /// The page for a request that is closed; an answer to it (`by`) is recorded.
    async fn closed_page(&self, id: u64, by: Option<&str>) -> Page {
        let closed = lock(&self.state).closed.get(&id).map(|c| c.why.clone());
        let stored = self.approvals.store.request(id).await.ok().flatten();
        let why = closed
            .or_else(|| stored.as_ref().map(|r| r.state.as_str().to_string()))
            .unwrap_or_else(|| "closed".into());
        if let Some(by) = by {
            self.record_refusal(
                Some(id),
                "page",
                Some(by),
                &format!("late answer refused: the request is closed ({why})"),
            )
            .await;
        }
        let expired =
            why.starts_with("expired") || stored.is_some_and(|r| r.state == RequestState::Expired);
        let kind = if expired {
            OutcomeKind::Expired
        } else {
            OutcomeKind::AlreadyDecided
        };
        outcome(kind, &format!("Request {id}: {why}."))
    }

    // ---------------------------------------------------------------- Slack

    /// `POST /slack/interactions`: an Approve or Deny click in Slack.
    pub(super) async fn slack_answer(&self, headers: &HeaderMap, body: &[u8]) -> Page {
        let Some(secret) = self
            .approvals
            .config
            .slack()
            .and_then(|c| c.signing_secret.clone())
        else {
            return Page::text(
                404,
                "no Slack channel with a signing secret is configured\n",
            );
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let timestamp = header("x-slack-request-timestamp");
        let signature = header("x-slack-signature");
        let now_secs = now_ms() / 1000;
        if let Err(e) = slack::verify_request(&secret, timestamp, signature, body, now_secs) {
            self.record_refusal(None, "slack", None, &format!("Slack request refused: {e}"))
                .await;
            return Page::text(401, format!("refused: {e}\n"));
        }
        let replayed = {
            let mut seen = lock(&self.approvals.slack_seen);
            let horizon = now_secs.saturating_sub(2 * crate::approvals::sign::DEFAULT_WINDOW_SECS);
            seen.retain(|_, ts| *ts >= horizon);
            seen.insert(signature.to_string(), timestamp.parse().unwrap_or(now_secs))
                .is_some()
        };
        if replayed {
            self.record_refusal(
                None,
                "slack",
                None,
                "Slack request refused: replayed (this signature was already accepted)",
            )
            .await;
            return Page::text(401, "refused: replayed request\n");
        }
        let click = match slack::parse_interaction(body) {
            Ok(click) => click,
            Err(e) => {
                self.record_refusal(None, "slack", None, &format!("Slack payload refused: {e}"))
                    .await;
                return Page::text(400, format!("refused: {e}\n"));
            }
        };
        let id = click.request_id;
        let Some(reviewer) = self
            .approvals
            .config
            .slack_reviewer(&click.user_id)
            .map(|r| r.name.clone())
        else {
            let who = format!("slack:{}", click.user_id);
            self.record_refusal(
                Some(id),
                "slack",
                Some(&who),
                &format!("Slack user {} is not a configured reviewer", click.user_id),
            )
            .await;
            return slack_reply(
                &format!(
                    "You are not a reviewer configured for interceptor on {}; nothing was decided.",
                    self.approvals.host
                ),
                false,
            );
        };
        let decision = match click.choice {
            slack::Choice::Approve => Decision::Approved,
            slack::Choice::Deny => Decision::Denied,
        };
        let via = Via {
            channel: "slack",
            comment: None,
            token: None,
        };
        match self
            .decide(
                id,
                decision,
                GrantTerms::default(),
                false,
                reviewer.clone(),
                via,
            )
            .await
        {
            Ok(Response::Decided { .. }) => {
                let headline = lock(&self.state)
                    .closed
                    .get(&id)
                    .map(|c| c.headline.clone())
                    .unwrap_or_else(|| format!("request {id}"));
                let word = match decision {
                    Decision::Approved => "approved",
                    Decision::Denied => "denied",
                };
                let update = slack::decided_message(&headline, word, &reviewer);
                // Block Kit clicks are updated through their response_url (Slack ignores
                // this answer's body for them).
                if let (Some(url), Some(notifier)) =
                    (click.response_url.clone(), self.approvals.notifier.clone())
                {
                    let update = update.clone();
                    tokio::spawn(async move {
                        match notifier.respond(&url, &update).await {
                            Ok(_) => debug!(id, "Slack message updated with the decision"),
                            Err(e) => warn!(id, error = %e, "could not update the Slack message"),
                        }
                    });
                }
                Page::json(200, update.to_string())
            }
            Ok(Response::Voted { have, need, .. }) => slack_reply(
                &format!("Your approval of request {id} is recorded: {have} of {need}."),
                false,
            ),
            Ok(_) => slack_reply("unexpected answer", false),
            Err(message) => slack_reply(&format!("Not applied: {message}"), false),
        }
    }

    // ---------------------------------------------------------------- restarts

    /// Loads the requests an earlier daemon left pending: each waits for its held task to
    /// be re-adopted (same pid and start time), keeping its id, deadline and links.
    pub(super) async fn restore_requests(&self) {
        match self.approvals.store.pending().await {
            Ok(requests) => {
                if !requests.is_empty() {
                    info!(
                        count = requests.len(),
                        "pending requests from an earlier daemon"
                    );
                }
                *lock(&self.approvals.restored) = requests;
            }
            Err(e) => error!(error = %e, "could not read pending requests from the approval store"),
        }
    }

    /// The stored request of a re-adopted held task, if an earlier daemon made one.
    pub(super) fn take_restored(&self, pid: u32, start_ticks: u64) -> Option<StoredRequest> {
        let mut restored = lock(&self.approvals.restored);
        let i = restored
            .iter()
            .position(|r| r.pid == pid && r.start_ticks == start_ticks && r.operation == "exec")?;
        Some(restored.swap_remove(i))
    }

    /// After re-adoption: stored requests whose task did not come back are cancelled.
    pub(super) async fn close_unclaimed(&self) {
        let left: Vec<StoredRequest> = std::mem::take(&mut *lock(&self.approvals.restored));
        for request in left {
            let why = if request.operation == "open" {
                "cancelled: the daemon restarted; a pending open is asked again when the agent retries"
            } else {
                "cancelled: the held process is gone (the daemon restarted meanwhile)"
            };
            info!(id = request.id, "{why}");
            let mut row = ApprovalAudit {
                request: request.id,
                step: ApprovalStep::Cancelled,
                operation: if request.operation == "open" {
                    crate::policy::Operation::Open
                } else {
                    crate::policy::Operation::Exec
                },
                agent: String::new(),
                pid: request.pid,
                binary: String::new(),
                path: None,
                rule: None,
                controls: Vec::new(),
                reviewers: Vec::new(),
                channel: None,
                by: None,
                detail: Some(why.into()),
            };
            if let Ok(notice) = serde_json::from_str::<Notice>(&request.notice) {
                row.agent = notice.agent;
                row.binary = notice.exe;
                row.rule = Some(notice.rule);
                row.controls = notice.controls;
            }
            let row_template = row.clone();
            if let Err(e) = self
                .append_all(vec![NewEntry::now(AuditEvent::Approval(row))])
                .await
            {
                error!(id = request.id, error = %e, "a cancelled request was not recorded in the audit log");
            }
            self.store_close(request.id, RequestState::Cancelled, "daemon", None)
                .await;
            let mut rejected = row_template;
            rejected.step = ApprovalStep::Rejected;
            rejected.detail = None;
            lock(&self.state).closed.insert(
                request.id,
                Closed {
                    why: why.into(),
                    row: rejected,
                    headline: format!("request {}", request.id),
                },
            );
        }
    }

    // ---------------------------------------------------------------- grants

    /// Lets a held exec run on an earlier approval's grant (same agent, binary and, unless
    /// the grant covers the binary, argv), using it up by one. `false`: no grant covers it.
    pub(super) async fn use_exec_grant(
        &self,
        view: &PendingView,
        decision: &mut DecisionAudit,
        pidfd: &Pidfd,
        started: Instant,
    ) -> bool {
        let now = Instant::now();
        // The held task is stopped before its first instruction: its executable is the file
        // it is about to run. Unknown identity: no grant applies.
        let file = procfs::exe_identity(view.pid).ok();
        let (used, expired) = {
            let mut state = lock(&self.state);
            let expired: Vec<ExecGrant> = state
                .exec_grants
                .values()
                .filter(|g| g.expires <= now)
                .cloned()
                .collect();
            for g in &expired {
                state.exec_grants.remove(&g.id);
            }
            let used = state
                .exec_grants
                .values_mut()
                .find(|g| {
                    g.key.agent == view.agent
                        && g.key.binary == view.exe
                        && Some(g.key.file) == file
                        && g.key.argv.as_ref().is_none_or(|a| *a == view.argv)
                })
                .map(|g| {
                    g.uses_left -= 1;
                    g.clone()
                });
            if let Some(g) = &used
                && g.uses_left == 0
            {
                state.exec_grants.remove(&g.id);
            }
            (used, expired)
        };
        let mut rows: Vec<NewEntry> = expired
            .iter()
            .map(|g| NewEntry::now(AuditEvent::Grant(grant_row(g, GrantStep::Expired))))
            .collect();
        let Some(grant) = used else {
            if let Err(e) = self.append_all(rows).await {
                error!(error = %e, "expired grants were not recorded in the audit log");
            }
            return false;
        };
        decision.outcome = Outcome::Allowed;
        decision.action = Action::Allow;
        decision.decided_by = DecidedBy::Grant(format!("x{}", grant.id));
        decision.reason = format!(
            "granted by {} with request {} ({} use(s) left)",
            grant.by, grant.request, grant.uses_left
        );
        decision.latency_us = Some(started.elapsed().as_micros() as u64);
        rows.push(NewEntry::now(AuditEvent::Decision(decision.clone())));
        rows.push(NewEntry::now(AuditEvent::Grant(grant_row(
            &grant,
            GrantStep::Used,
        ))));
        // Committed before the task runs; unrecordable means it does not run.
        if let Err(e) = self.append_all(rows).await {
            error!(pid = view.pid, error = %e, "killing an exec a grant allows: it could not be recorded (fail closed)");
            let _ = pidfd.signal(libc::SIGKILL);
            return true;
        }
        match self.resume(pidfd) {
            Ok(()) => info!(pid = view.pid, agent = %view.agent, grant = grant.id,
                            uses_left = grant.uses_left, "exec allowed by a grant"),
            Err(e) => warn!(pid = view.pid, error = %e, "could not resume an exec a grant allows"),
        }
        true
    }

    /// Installs an exec grant given with an approval.
    pub(super) async fn install_exec_grant(
        &self,
        request: u64,
        key: ExecGrantKey,
        terms: GrantTerms,
        by: &str,
        seq: Option<u64>,
    ) {
        let grant = {
            let mut state = lock(&self.state);
            let id = state.next_grant;
            state.next_grant += 1;
            let grant = ExecGrant {
                id,
                key,
                uses_left: terms.uses,
                expires: Instant::now() + terms.ttl,
                expires_at_ms: now_ms().saturating_add(terms.ttl.as_millis() as u64),
                request,
                by: by.to_string(),
            };
            state.exec_grants.insert(id, grant.clone());
            grant
        };
        info!(request, grant = grant.id, agent = %grant.key.agent, binary = %grant.key.binary,
              uses = terms.uses, ttl_secs = terms.ttl.as_secs(), "exec grant installed");
        let row = follow(
            AuditEvent::Grant(grant_row(&grant, GrantStep::Installed)),
            seq,
        );
        if let Err(e) = self.append_all(vec![row]).await {
            error!(request, error = %e, "an installed grant was not recorded in the audit log");
        }
    }

    /// Grants in force: exec grants (daemon) and open grants (kernel).
    pub(super) fn grant_views(&self) -> Vec<crate::control::GrantView> {
        let now = Instant::now();
        let mut views: Vec<crate::control::GrantView> = lock(&self.state)
            .exec_grants
            .values()
            .filter(|g| g.expires > now)
            .map(|g| crate::control::GrantView {
                id: format!("x{}", g.id),
                kind: "exec".into(),
                agent: g.key.agent.clone(),
                target: g.key.binary.clone(),
                argv: g.key.argv.clone(),
                uses_left: g.uses_left,
                expires_at_ms: g.expires_at_ms,
                request: Some(g.request),
                by: Some(g.by.clone()),
            })
            .collect();
        let boot_now = loader::boottime_ns();
        let wall_now = now_ms();
        let kernel = lock(&self.kernel);
        for (key, grant) in kernel.grants.iter().filter_map(Result::ok) {
            if grant.uses_left == 0 || grant.expires_boot_ns <= boot_now {
                continue;
            }
            views.push(crate::control::GrantView {
                id: format!("o{}:{}:{}", key.agent_id, key.dev, key.ino),
                kind: "open".into(),
                agent: self.agent_name(key.agent_id),
                target: format!("inode {} on device {:#x}", key.ino, key.dev),
                argv: None,
                uses_left: grant.uses_left,
                expires_at_ms: wall_now + (grant.expires_boot_ns - boot_now) / 1_000_000,
                request: None,
                by: None,
            });
        }
        views
    }

    /// Ends an exec grant now (`x<N>`; open grants are `o<agent>:<dev>:<ino>`).
    pub(super) async fn revoke_grant(&self, id: &str, by: &str) -> Result<Response, String> {
        let row = if let Some(n) = id.strip_prefix('x').and_then(|n| n.parse::<u64>().ok()) {
            let grant = lock(&self.state)
                .exec_grants
                .remove(&n)
                .ok_or_else(|| format!("no exec grant {id} (see `interceptor grants list`)"))?;
            let mut row = grant_row(&grant, GrantStep::Revoked);
            row.by = Some(by.to_string());
            row
        } else if let Some(parts) = id.strip_prefix('o') {
            let fields: Vec<u64> = parts.split(':').filter_map(|p| p.parse().ok()).collect();
            let [agent_id, dev, ino] = fields[..] else {
                return Err(format!(
                    "grant id {id:?} is not x<N> or o<agent>:<dev>:<ino>"
                ));
            };
            let key = GrantKey {
                agent_id: agent_id as u32,
                _pad: 0,
                dev,
                ino,
            };
            lock(&self.kernel)
                .grants
                .remove(&key)
                .map_err(|_| format!("no open grant {id} (see `interceptor grants list`)"))?;
            GrantAudit {
                step: GrantStep::Revoked,
                agent: self.agent_name(key.agent_id),
                target: format!("inode {ino} on device {dev:#x}"),
                uses_left: Some(0),
                expires_at_ms: None,
                request: None,
                by: Some(by.to_string()),
            }
        } else {
            return Err(format!(
                "grant id {id:?} is not x<N> or o<agent>:<dev>:<ino>"
            ));
        };
        info!(grant = id, %by, "grant revoked");
        if let Err(e) = self
            .append_all(vec![NewEntry::now(AuditEvent::Grant(row))])
            .await
        {
            error!(grant = id, error = %e, "a revoked grant was not recorded in the audit log");
        }
        Ok(Response::Revoked { id: id.to_string() })
    }

    // ---------------------------------------------------------------- one request

    /// Everything about request `id`: in memory while pending or recently closed, else
    /// from the store.
    pub(super) async fn show_approval(&self, id: u64) -> Result<Response, String> {
        let live = {
            let state = lock(&self.state);
            state
                .pending
                .get(&id)
                .map(|p| crate::control::ApprovalDetail {
                    id,
                    state: "pending".into(),
                    outcome: None,
                    reviewers: p.reviewers.clone(),
                    approvals_needed: p.needed,
                    approvals: p.approvals.clone(),
                    deadline_ms: p.notice.deadline_ms,
                    on_timeout: p.on_timeout.to_string(),
                    notice: p.notice.clone(),
                })
        };
        if let Some(detail) = live {
            return Ok(Response::Approval {
                request: Box::new(detail),
            });
        }
        let stored = self
            .approvals
            .store
            .request(id)
            .await
            .map_err(|e| format!("approval store: {e}"))?
            .ok_or_else(|| format!("no request {id}"))?;
        let notice: Notice = serde_json::from_str(&stored.notice)
            .map_err(|e| format!("request {id}: its stored notice is unreadable: {e}"))?;
        let why = lock(&self.state).closed.get(&id).map(|c| c.why.clone());
        Ok(Response::Approval {
            request: Box::new(crate::control::ApprovalDetail {
                id,
                state: stored.state.as_str().into(),
                outcome: why.or_else(|| stored.decided_by.map(|by| format!("decided by {by}"))),
                reviewers: notice.links.iter().map(|l| l.reviewer.clone()).collect(),
                approvals_needed: 1,
                approvals: Vec::new(),
                deadline_ms: stored.deadline_ms,
                on_timeout: stored.on_timeout,
                notice,
            }),
        })
    }

    /// Carries on with a request an earlier daemon stored for this held task.
    pub(super) fn readopt_request(
        self: &Arc<Self>,
        stored: StoredRequest,
        mut view: PendingView,
        mut decision: DecisionAudit,
        pidfd: Pidfd,
        started: Instant,
    ) {
        let id = stored.id;
        view.id = id;
        decision.request = Some(id);
        let notice: Option<Notice> = serde_json::from_str(&stored.notice).ok();
        let left = Duration::from_millis(stored.deadline_ms.saturating_sub(now_ms()));
        let on_timeout = match stored.on_timeout.as_str() {
            "allow" => Action::Allow,
            "audit" => Action::Audit,
            _ => Action::Deny,
        };
        let active = self.active();
        let rule = rule_name_rule(&active.policy, view.rule.as_str());
        let reviewers = notice
            .as_ref()
            .map(|n| n.links.iter().map(|l| l.reviewer.clone()).collect())
            .unwrap_or_else(|| self.request_reviewers(&active.policy, rule));
        info!(
            id,
            pid = view.pid,
            left_secs = left.as_secs(),
            "re-adopted a pending request of an earlier daemon: same id, deadline and review links"
        );
        let notice = notice.unwrap_or_else(|| Notice {
            id,
            host: self.approvals.host.clone(),
            agent: view.agent.clone(),
            session: view.session.clone(),
            operation: view.operation.clone(),
            access: view.access.clone(),
            pid: view.pid,
            uid: view.uid,
            user: None,
            target: view.filename.clone(),
            exe: view.exe.clone(),
            argv: view.argv.clone(),
            cwd: view.cwd.clone(),
            env: view.env.clone(),
            parents: view.parents.clone(),
            recent: view.recent.clone(),
            rationale: None,
            rule: view.rule.clone(),
            reason: view.reason.clone(),
            controls: decision.controls.clone(),
            severity: None,
            requested_at_ms: stored.created_ms,
            deadline_ms: stored.deadline_ms,
            on_timeout: stored.on_timeout.clone(),
            grant: None,
            links: Vec::new(),
        });
        let exec_grant = exec_grant_key(&view, rule);
        let timeout = Duration::from_millis(stored.deadline_ms.saturating_sub(stored.created_ms));
        lock(&self.state).pending.insert(
            id,
            Pending {
                view,
                pidfd: Some(pidfd),
                grant: None,
                access: 0,
                decision_seq: None,
                decision,
                held_at: started,
                deadline: Instant::now() + left,
                timeout,
                on_timeout,
                reviewers,
                grant_offer: notice.grant,
                notice,
                needed: approvals_needed(rule),
                approvals: Vec::new(),
                exec_grant,
                // Whether an earlier daemon escalated is not kept: not again.
                escalation: None,
            },
        );
        tokio::spawn(self.clone().watch_request(id));
    }

    // ---------------------------------------------------------------- context API

    /// `interceptor context --rationale TEXT` from inside an agent: kept for the agent's
    /// next requests, shown as the agent's own (unverified) words.
    pub(super) fn set_context(&self, rationale: &str, peer: UCred) -> Result<Response, String> {
        let (pid, start_ticks) = peer_process(peer)?;
        let Some(agent_id) = self.tracked_agent(pid, start_ticks) else {
            return Err(format!(
                "the caller (pid {pid}) is not an agent: context is set from inside an agent's process tree"
            ));
        };
        let rationale = rationale.trim();
        if rationale.is_empty() {
            return Err("the rationale is empty".into());
        }
        if rationale.chars().count() > MAX_RATIONALE_CHARS {
            return Err(format!(
                "the rationale is longer than {MAX_RATIONALE_CHARS} characters"
            ));
        }
        let agent = self.agent_name(agent_id);
        // Per session: what one launch says is not shown on another's requests.
        let identity = self.agent_identity(agent_id);
        lock(&self.state)
            .rationales
            .insert(identity, rationale.to_string());
        info!(pid, %agent, "agent context set");
        Ok(Response::ContextSet { agent })
    }

    // ---------------------------------------------------------------- context API (read)

    /// What the agent with this identity (`name` or `name@session`) last said it is doing
    /// (`interceptor context --rationale`).
    pub(super) fn rationale_for(&self, agent: &str) -> Option<String> {
        lock(&self.state).rationales.get(agent).cloned()
    }
}

/// A fresh review token per reviewer, and the (hash, reviewer) pairs the store keeps.
type Issued = (Vec<(String, Token)>, Vec<(TokenHash, String)>);

fn issue_tokens(reviewers: &[String]) -> Result<Issued, String> {
    let mut tokens = Vec::with_capacity(reviewers.len());
    for reviewer in reviewers {
        let token = Token::generate().map_err(|e| format!("review token: {e}"))?;
        tokens.push((reviewer.clone(), token));
    }
    let hashes = tokens.iter().map(|(r, t)| (t.hash(), r.clone())).collect();
    Ok((tokens, hashes))
}

/// The longest rationale an agent may attach.
const MAX_RATIONALE_CHARS: usize = 2000;

/// A grant's audit row.
fn grant_row(g: &ExecGrant, step: GrantStep) -> GrantAudit {
    GrantAudit {
        step,
        agent: g.key.agent.clone(),
        target: match &g.key.argv {
            Some(argv) => format!(
                "{} ({})",
                g.key.binary,
                crate::approvals::shell_words(argv, &g.key.binary)
            ),
            None => format!("{} (any argv)", g.key.binary),
        },
        uses_left: Some(g.uses_left),
        expires_at_ms: Some(g.expires_at_ms),
        request: Some(g.request),
        by: Some(g.by.clone()),
    }
}

/// A result page.
fn outcome(kind: OutcomeKind, detail: &str) -> Page {
    let (status, html) = page::render_outcome(kind, detail);
    Page::html(status, html)
}

/// A short ephemeral reply to a Slack click.
fn slack_reply(text: &str, replace_original: bool) -> Page {
    let body = serde_json::json!({
        "response_type": "ephemeral",
        "replace_original": replace_original,
        "text": text,
    });
    Page::json(200, body.to_string())
}

/// The grant a reviewer asked for, if the rule offers one that large.
fn grant_within(offer: Option<GrantOffer>, minutes: u32, uses: u32) -> Result<GrantTerms, String> {
    let Some(offer) = offer else {
        return Err("this rule allows approving once only, not a grant".into());
    };
    let ttl_secs = u64::from(minutes) * 60;
    if ttl_secs > offer.max_ttl_secs {
        return Err(format!(
            "a grant of {minutes} min is longer than the rule allows ({} min)",
            offer.max_ttl_secs.div_ceil(60)
        ));
    }
    if uses > offer.max_uses {
        return Err(format!(
            "a grant of {uses} uses is more than the rule allows ({})",
            offer.max_uses
        ));
    }
    GrantTerms::new(Some(uses), Some(ttl_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_stay_within_the_rule_offer() {
        let offer = Some(GrantOffer {
            max_ttl_secs: 1800,
            max_uses: 5,
        });
        let terms = grant_within(offer, 30, 5).expect("at the limits");
        assert_eq!((terms.uses, terms.ttl.as_secs()), (5, 1800));
        let long = grant_within(offer, 31, 1).unwrap_err();
        assert!(
            long.contains("longer than the rule allows (30 min)"),
            "{long}"
        );
        let many = grant_within(offer, 1, 6).unwrap_err();
        assert!(many.contains("more than the rule allows (5)"), "{many}");
        let none = grant_within(None, 1, 1).unwrap_err();
        assert!(none.contains("once only"), "{none}");
    }
}
