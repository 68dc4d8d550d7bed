//! `interceptor audit ...`: query, show, tail, verify, head, export, evidence, prune.
//!
//! Offline: reads the database directly (no daemon needed), never creates one.

use std::{io::Write, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::{
    AuditError, ChainPoint, Filter, Store, StoreOptions,
    chain::VerifyReport,
    evidence, export,
    query::{format_time, parse_time},
    record::{AuditEvent, StoredRow, now_ms},
    store::{AuditTarget, DEFAULT_SQLITE_PATH},
};

/// Read, verify, export and prune the audit log.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Which log to read.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The SQLite audit log [default: /var/lib/interceptor/audit.db].
    #[arg(
        long,
        global = true,
        env = "INTERCEPTOR_AUDIT_DB",
        value_name = "PATH",
        conflicts_with = "db_url"
    )]
    pub db: Option<PathBuf>,
    /// A PostgreSQL audit log instead, e.g. postgres://audit@db.internal/interceptor.
    #[arg(long, global = true, env = "INTERCEPTOR_AUDIT_URL", value_name = "URL")]
    pub db_url: Option<String>,
}

impl DbArgs {
    pub fn target(&self) -> AuditTarget {
        match (&self.db_url, &self.db) {
            (Some(url), _) => AuditTarget::Postgres(url.clone()),
            (None, Some(path)) => AuditTarget::Sqlite(path.clone()),
            (None, None) => AuditTarget::Sqlite(PathBuf::from(DEFAULT_SQLITE_PATH)),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List rows matching filters (the newest LIMIT, oldest first).
    ///
    /// Example: interceptor audit query --agent copilot --since 7d --decision denied
    ///
    /// Example: interceptor audit query --control SOC2:CC6.1 --since 2025-05-01 --format csv
    ///
    /// Example: interceptor audit query --binary '/usr/bin/*' --approver alice --format json
    Query {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// At most this many rows (the newest); 0 for all.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },

    /// One row with its full context and the lifecycle of the request it belongs to.
    ///
    /// Example: interceptor audit show 4212
    Show {
        /// The row's seq (first column of `audit query`).
        seq: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// The last rows; with -f, keep printing new ones as they are committed.
    ///
    /// Example: interceptor audit tail -f --agent copilot
    Tail {
        /// How many rows to show first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        /// Keep waiting for new rows (Ctrl-C to stop).
        #[arg(short, long)]
        follow: bool,
        /// With -f: how often to look for new rows, in ms.
        #[arg(long, default_value_t = 500, value_name = "MS")]
        interval: u64,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },

    /// Check the whole hash chain; name the first row that was edited, deleted or cut off.
    ///
    /// Exits 0 when intact, 1 when broken. With --head, also checks the log against a head
    /// exported earlier with `audit head` and kept elsewhere: this catches a log rewritten
    /// from some row on, and a tail cut off together with the recorded head.
    ///
    /// Example: interceptor audit verify
    ///
    /// Example: interceptor audit verify --head 81234:5f1c...e9
    Verify {
        /// An exported head, SEQ:HASH.
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },

    /// Print the chain head (SEQ:HASH) to anchor elsewhere (a ticket, a WORM store,
    /// another host), for `audit verify --head` later.
    ///
    /// Example: interceptor audit head >> /mnt/worm/interceptor-heads.txt
    Head {
        /// Print JSON (seq, hash, time, log).
        #[arg(long)]
        json: bool,
    },

    /// Export rows for other tools: JSON lines (as stored, with hashes) or OCSF events
    /// (process and file system activity, for SIEMs).
    ///
    /// Example: interceptor audit export --format ocsf --since 1d > interceptor-ocsf.jsonl
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[command(flatten)]
        filter: FilterArgs,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },

    /// An evidence bundle for auditors: per control, the decisions, counts, approvers,
    /// response times, and whether the chain verifies.
    ///
    /// Exits 1 (after writing the bundle) when the chain does not verify.
    ///
    /// Example: interceptor audit evidence --control SOC2:CC6.1 --from 2025-04-01 --to 2025-07-01 --format html -o q2.html
    Evidence {
        /// Control tag, as in the policy (repeatable).
        #[arg(long = "control", required = true, value_name = "ID")]
        controls: Vec<String>,
        /// Start of the period: a duration back from now (30d) or a timestamp.
        #[arg(long)]
        from: String,
        /// End of the period (exclusive) [default: now].
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value_t = EvidenceFormat::Md)]
        format: EvidenceFormat,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },

    /// Delete rows older than a point in time, keeping the rest verifiable.
    ///
    /// The chain is verified first (a broken log is not pruned: it is evidence). Rows go
    /// as a prefix of the chain; the hash of the last one becomes the anchor the first kept
    /// row links to, and the prune itself is appended as a row. Export a new head after.
    ///
    /// Example: interceptor audit prune --before 180d
    Prune {
        /// Rows before this go: a duration back from now (180d) or a timestamp.
        #[arg(long)]
        before: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Ocsf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvidenceFormat {
    Md,
    Html,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OpArg {
    Exec,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    Allow,
    Audit,
    Ask,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecisionArg {
    #[value(alias = "allow")]
    Allowed,
    #[value(alias = "deny")]
    Denied,
    Held,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecidedByArg {
    Kernel,
    Policy,
    Reviewer,
    Timeout,
    DaemonDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Exec,
    Open,
    Decision,
    Approval,
    Grant,
    PolicyReload,
    Daemon,
    Loss,
    Prune,
    Guard,
}

/// Row filters; every one given must match.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Agent name.
    #[arg(long)]
    pub agent: Option<String>,
    /// From this point: a duration back from now (7d, 2h, 30m) or a timestamp
    /// (2025-05-01T12:00:00Z, 2025-05-01).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Before this point (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Operation.
    #[arg(long = "op", value_enum)]
    pub op: Option<OpArg>,
    /// What the policy said.
    #[arg(long, value_enum)]
    pub action: Option<ActionArg>,
    /// What happened (decision rows).
    #[arg(long, value_enum)]
    pub decision: Option<DecisionArg>,
    /// The deciding rule's name.
    #[arg(long)]
    pub rule: Option<String>,
    /// A compliance control tag, e.g. SOC2:CC6.1.
    #[arg(long, value_name = "ID")]
    pub control: Option<String>,
    #[arg(long)]
    pub pid: Option<u32>,
    /// The program's path; end it with * to match a prefix ('/usr/bin/*').
    #[arg(long, value_name = "PATH")]
    pub binary: Option<String>,
    /// The reviewer who decided.
    #[arg(long, value_name = "NAME")]
    pub approver: Option<String>,
    /// Who or what decided.
    #[arg(long, value_enum)]
    pub decided_by: Option<DecidedByArg>,
    /// Row kind (repeatable).
    #[arg(long = "kind", value_enum)]
    pub kinds: Vec<KindArg>,
}

impl FilterArgs {
    /// The store filter; bad times are reported with the flag they came from.
    pub fn to_filter(&self, now_ms: u64) -> anyhow::Result<Filter> {
        let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<u64>> {
            v.as_deref()
                .map(|t| parse_time(t, now_ms).map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
                .transpose()
        };
        Ok(Filter {
            since_ms: time("since", &self.since)?,
            until_ms: time("until", &self.until)?,
            agent: self.agent.clone(),
            // Kinds are stored snake_case (policy_reload).
            kinds: self
                .kinds
                .iter()
                .map(|k| name(k).replace('-', "_"))
                .collect(),
            operation: self.op.as_ref().map(name),
            action: self.action.as_ref().map(name),
            outcome: self.decision.as_ref().map(name),
            rule: self.rule.clone(),
            control: self.control.clone(),
            pid: self.pid,
            binary: self.binary.clone(),
            approver: self.approver.clone(),
            decided_by: self.decided_by.as_ref().map(name),
            ..Filter::default()
        })
    }
}

/// The stored spelling of a flag value: its clap name.
fn name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .expect("no skipped values")
        .get_name()
        .to_string()
}

/// Runs `interceptor audit ...`.
pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run_async(args));
    match result {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            // `audit query | head`: the reader left; not an error.
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

async fn open(db: &DbArgs) -> anyhow::Result<Store> {
    let mut opts = StoreOptions::new(db.target());
    opts.create = false;
    Ok(Store::open(&opts).await?)
}

fn output(path: &Option<PathBuf>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

async fn run_async(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let now = now_ms();
    let store = open(&args.db).await?;
    let code = match args.command {
        AuditCommand::Query {
            filter,
            format,
            limit,
        } => {
            let mut f = filter.to_filter(now)?;
            if limit > 0 {
                f.limit = Some(limit);
                f.newest_first = true;
                f.oldest_first_output = true;
            }
            let rows = store.query(&f).await?;
            let mut out = output(&None)?;
            print_rows(&mut out, &rows, format, true)?;
            out.flush()?;
            ExitCode::SUCCESS
        }
        AuditCommand::Show { seq, json } => {
            let story = store.story(seq).await?;
            if story.is_empty() {
                bail!(
                    "no row {seq} in {} (see `interceptor audit query`)",
                    store.target()
                );
            }
            let mut out = output(&None)?;
            if json {
                let rows: Vec<_> = story.iter().map(StoredRow::to_json).collect();
                let main = story.iter().find(|r| r.seq == seq).map(StoredRow::to_json);
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "row": main, "story": rows })
                    )?
                )?;
            } else {
                write!(out, "{}", render_story(&story, seq))?;
            }
            out.flush()?;
            ExitCode::SUCCESS
        }
        AuditCommand::Tail {
            lines,
            follow,
            interval,
            filter,
            format,
        } => {
            let mut f = filter.to_filter(now)?;
            f.limit = Some(lines);
            f.newest_first = true;
            f.oldest_first_output = true;
            let rows = store.query(&f).await?;
            let mut out = std::io::stdout().lock();
            let mut last = rows.last().map(|r| r.seq);
            print_rows(&mut out, &rows, format, true)?;
            out.flush()?;
            if follow {
                if last.is_none() {
                    last = Some(store.chain_state().await?.head.seq);
                }
                f.limit = None;
                f.newest_first = false;
                f.oldest_first_output = false;
                loop {
                    tokio::time::sleep(Duration::from_millis(interval.max(50))).await;
                    f.after_seq = last;
                    let rows = store.query(&f).await?;
                    if let Some(r) = rows.last() {
                        last = Some(r.seq);
                    }
                    print_rows(&mut out, &rows, format, false)?;
                    out.flush()?;
                }
            }
            ExitCode::SUCCESS
        }
        AuditCommand::Verify { head, json } => {
            let external = head
                .as_deref()
                .map(ChainPoint::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--head: {e}"))?;
            let report = verify(&store, external).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", report.summary());
                if report.ok() {
                    println!(
                        "verified in {} ms ({:.0} rows/s)",
                        report.elapsed_ms,
                        report.rows as f64 / (report.elapsed_ms.max(1) as f64 / 1000.0)
                    );
                }
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        AuditCommand::Head { json } => {
            let state = store.chain_state().await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "seq": state.head.seq,
                        "hash": hex::encode(state.head.hash),
                        "head": state.head.to_token(),
                        "time": format_time(now as i64),
                        "log": store.target(),
                    })
                );
            } else {
                println!("{}", state.head.to_token());
            }
            ExitCode::SUCCESS
        }
        AuditCommand::Export {
            format,
            filter,
            output: path,
        } => {
            let mut f = filter.to_filter(now)?;
            let mut out = output(&path)?;
            let mut written = 0u64;
            let mut skipped = 0u64;
            // In pages, so a large export does not sit in memory.
            f.limit = Some(5000);
            loop {
                let rows = store.query(&f).await?;
                let Some(last) = rows.last() else { break };
                f.after_seq = Some(last.seq);
                for row in &rows {
                    match format {
                        ExportFormat::Jsonl => {
                            writeln!(out, "{}", export::jsonl_line(row))?;
                            written += 1;
                        }
                        ExportFormat::Ocsf => match export::ocsf_event(row) {
                            Some(ev) => {
                                writeln!(out, "{ev}")?;
                                written += 1;
                            }
                            None => skipped += 1,
                        },
                    }
                }
            }
            out.flush()?;
            if path.is_some() || skipped > 0 {
                eprintln!(
                    "exported {written} events{}",
                    if skipped > 0 {
                        format!(
                            "; {skipped} rows have no OCSF class (approval steps, grants, reloads, lifecycle) and were left out: use --format jsonl for them"
                        )
                    } else {
                        String::new()
                    }
                );
            }
            ExitCode::SUCCESS
        }
        AuditCommand::Evidence {
            controls,
            from,
            to,
            format,
            output: path,
        } => {
            let from_ms = parse_time(&from, now).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
            let to_ms = match &to {
                Some(t) => parse_time(t, now).map_err(|e| anyhow::anyhow!("--to: {e}"))?,
                None => now,
            };
            if to_ms <= from_ms {
                bail!(
                    "--to ({}) is not after --from ({})",
                    format_time(to_ms as i64),
                    format_time(from_ms as i64)
                );
            }
            let report = verify(&store, None).await?;
            let mut rows = Vec::new();
            for control in &controls {
                let f = Filter {
                    since_ms: Some(from_ms),
                    until_ms: Some(to_ms),
                    kinds: vec!["decision".into()],
                    control: Some(control.clone()),
                    ..Filter::default()
                };
                rows.extend(store.query(&f).await?);
            }
            rows.sort_by_key(|r| r.seq);
            rows.dedup_by_key(|r| r.seq);
            let bundle = evidence::build(
                &rows,
                &controls,
                from_ms as i64,
                to_ms as i64,
                store.target(),
                &report,
                now as i64,
            );
            let text = match format {
                EvidenceFormat::Md => evidence::render_md(&bundle),
                EvidenceFormat::Html => evidence::render_html(&bundle),
                EvidenceFormat::Csv => evidence::render_csv(&bundle),
            };
            let mut out = output(&path)?;
            out.write_all(text.as_bytes())?;
            out.flush()?;
            if !report.ok() {
                eprintln!("{}", report.summary());
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        AuditCommand::Prune { before, json } => {
            let before_ms =
                parse_time(&before, now).map_err(|e| anyhow::anyhow!("--before: {e}"))?;
            let report = verify(&store, None).await?;
            if !report.ok() {
                bail!(
                    "{}; not pruning a log that does not verify (its rows are evidence)",
                    report.summary()
                );
            }
            let pruned = store.prune(before_ms).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&pruned)?);
            } else if let (Some(anchor), Some(record)) = (&pruned.anchor, &pruned.record) {
                println!(
                    "pruned {} rows (through row {}); the log now starts after anchor {}; prune recorded as row {}",
                    pruned.pruned_rows,
                    anchor.seq,
                    hex::encode(anchor.hash),
                    record.seq
                );
                println!("new head to anchor: {}", record.to_token());
            } else {
                println!(
                    "nothing to prune: no row before {}",
                    format_time(before_ms as i64)
                );
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

/// Verify, with SQLite's own page check first (a damaged file is reported as such).
async fn verify(store: &Store, external: Option<ChainPoint>) -> anyhow::Result<VerifyReport> {
    if let Some(problem) = store.integrity_problem().await? {
        return Err(AuditError::Corrupt {
            target: store.target().to_string(),
            message: problem,
        }
        .into());
    }
    Ok(store.verify(external).await?)
}

/// The row in a phrase: what happened to what.
pub fn describe(row: &StoredRow) -> String {
    let Ok(event) = row.event() else {
        return format!("(unreadable payload: {} bytes)", row.payload.len());
    };
    match event {
        AuditEvent::Exec(e) => format!(
            "exec {}{}",
            crate::cli::shell_words(&e.process.argv),
            flags(&e.flags)
        ),
        AuditEvent::Open(o) => format!(
            "open {} [{}]{}",
            o.path,
            o.access.join(","),
            flags(&o.flags)
        ),
        AuditEvent::Decision(d) => {
            let what = match d.operation {
                crate::policy::Operation::Exec => crate::cli::shell_words(&d.process.argv),
                crate::policy::Operation::Open => d.files.join(" "),
            };
            let latency = d
                .latency_us
                .map_or_else(String::new, |l| format!(" after {}", human_us(l)));
            format!(
                "{} {what}: {} by {}{latency}",
                match d.operation {
                    crate::policy::Operation::Exec => "exec",
                    crate::policy::Operation::Open => "open",
                },
                d.outcome.as_str(),
                d.decided_by
            )
        }
        AuditEvent::Approval(a) => {
            let mut s = format!("approval request {} {}", a.request, a.step.as_str());
            if let Some(by) = &a.by {
                s.push_str(&format!(" by {by}"));
            }
            if let Some(ch) = &a.channel {
                s.push_str(&format!(" via {ch}"));
            }
            if !a.reviewers.is_empty() {
                s.push_str(&format!(" (reviewers: {})", a.reviewers.join(", ")));
            }
            if let Some(d) = &a.detail {
                s.push_str(&format!(": {d}"));
            }
            s
        }
        AuditEvent::Grant(g) => format!(
            "grant {:?} for {} on {}{}",
            g.step,
            g.agent,
            g.target,
            g.uses_left
                .map_or_else(String::new, |u| format!(" ({u} uses left)"))
        )
        .to_lowercase(),
        AuditEvent::PolicyReload(p) => match (&p.error, p.accepted) {
            (_, true) => format!(
                "policy reload accepted: {} now {}",
                p.origin,
                short(&p.policy_version)
            ),
            (Some(e), false) => format!("policy reload rejected: {e}"),
            (None, false) => format!("policy reload of {} rejected", p.origin),
        },
        AuditEvent::Daemon(d) => format!(
            "daemon {} (pid {}, backend {}, version {})",
            match d.step {
                super::DaemonStep::Start => "start",
                super::DaemonStep::Stop => "stop",
            },
            d.pid,
            d.backend,
            d.version
        ),
        AuditEvent::Loss(l) => format!(
            "loss counters: {}",
            l.counters
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        AuditEvent::Prune(p) => format!(
            "pruned {} rows through row {} (before {})",
            p.pruned_rows,
            p.pruned_through_seq,
            format_time(p.before_ms as i64)
        ),
        AuditEvent::Guard(g) if g.detail.is_empty() => format!("refused: {}", g.target),
        AuditEvent::Guard(g) => g.detail,
    }
}

fn flags(f: &[String]) -> String {
    if f.is_empty() {
        String::new()
    } else {
        format!(" [{}]", f.join(","))
    }
}

fn short(v: &str) -> &str {
    &v[..v.len().min(12)]
}

fn human_us(us: u64) -> String {
    if us < 10_000 {
        format!("{us} us")
    } else if us < 10_000_000 {
        format!("{} ms", us / 1000)
    } else {
        format!("{} s", us / 1_000_000)
    }
}

fn print_rows(
    out: &mut dyn Write,
    rows: &[StoredRow],
    format: Format,
    header: bool,
) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            if header {
                if rows.is_empty() {
                    writeln!(out, "no matching rows")?;
                    return Ok(());
                }
                writeln!(
                    out,
                    "{:>8}  {:<24} {:<13} {:<12} {:>7}  {:<18} WHAT",
                    "SEQ", "TIME", "KIND", "AGENT", "PID", "RULE"
                )?;
            }
            for r in rows {
                writeln!(
                    out,
                    "{:>8}  {:<24} {:<13} {:<12} {:>7}  {:<18} {}",
                    r.seq,
                    format_time(r.time_ms),
                    r.columns.kind,
                    r.columns.agent.as_deref().unwrap_or("-"),
                    r.columns.pid.map_or_else(|| "-".into(), |p| p.to_string()),
                    r.columns.rule.as_deref().unwrap_or("-"),
                    describe(r)
                )?;
            }
        }
        Format::Json => {
            let v: Vec<_> = rows.iter().map(StoredRow::to_json).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        Format::Jsonl => {
            for r in rows {
                writeln!(out, "{}", export::jsonl_line(r))?;
            }
        }
        Format::Csv => {
            if header {
                writeln!(
                    out,
                    "seq,time,kind,agent,pid,operation,binary,path,action,outcome,rule,controls,decided_by,approver,ref_seq,hash"
                )?;
            }
            for r in rows {
                let c = &r.columns;
                let opt = |v: &Option<String>| v.clone().unwrap_or_default();
                let fields = [
                    r.seq.to_string(),
                    format_time(r.time_ms),
                    c.kind.clone(),
                    opt(&c.agent),
                    c.pid.map_or_else(String::new, |p| p.to_string()),
                    opt(&c.operation),
                    opt(&c.binary),
                    opt(&c.path),
                    opt(&c.action),
                    opt(&c.outcome),
                    opt(&c.rule),
                    c.controls.as_deref().unwrap_or("").trim().to_string(),
                    opt(&c.decided_by),
                    opt(&c.approver),
                    r.ref_seq.map_or_else(String::new, |s| s.to_string()),
                    hex::encode(&r.hash),
                ];
                let line: Vec<String> = fields.iter().map(|f| evidence::csv_field(f)).collect();
                writeln!(out, "{}", line.join(","))?;
            }
        }
    }
    Ok(())
}

/// `audit show`: the row in full, then its story.
pub fn render_story(story: &[StoredRow], seq: u64) -> String {
    let mut s = String::new();
    let Some(row) = story.iter().find(|r| r.seq == seq) else {
        return s;
    };
    s.push_str(&format!(
        "row {}  {}  {}\n",
        row.seq,
        format_time(row.time_ms),
        row.columns.kind
    ));
    match row.event() {
        Ok(event) => {
            if let Some(p) = event.process() {
                s.push_str(&format!(
                    "  agent:      {} (pid {}, ppid {}, uid {})\n  binary:     {}\n  argv:       {}\n",
                    p.agent,
                    p.pid,
                    p.ppid,
                    p.uid,
                    p.binary,
                    crate::cli::shell_words(&p.argv)
                ));
                if let Some(cwd) = &p.cwd {
                    s.push_str(&format!("  cwd:        {cwd}\n"));
                }
            }
            match &event {
                AuditEvent::Decision(d) => {
                    if !d.files.is_empty() {
                        s.push_str(&format!("  files:      {}\n", d.files.join(", ")));
                    }
                    if !d.access.is_empty() {
                        s.push_str(&format!("  access:     {}\n", d.access.join(", ")));
                    }
                    s.push_str(&format!(
                        "  policy:     {} by {} (matched: {})\n  version:    {}\n  outcome:    {}, decided by {}{}\n  reason:     {}\n",
                        d.action,
                        d.winner.as_deref().map_or("the default".to_string(), |w| format!("rule {w}")),
                        if d.matched_rules.is_empty() { "none".to_string() } else { d.matched_rules.join(", ") },
                        d.policy_version,
                        d.outcome.as_str(),
                        d.decided_by,
                        d.latency_us.map_or_else(String::new, |l| format!(" after {}", human_us(l))),
                        d.reason
                    ));
                    if !d.controls.is_empty() {
                        s.push_str(&format!("  controls:   {}\n", d.controls.join(", ")));
                    }
                }
                _ => s.push_str(&format!("  what:       {}\n", describe(row))),
            }
        }
        Err(e) => s.push_str(&format!("  unreadable event: {e}\n")),
    }
    s.push_str(&format!(
        "  hash:       {}\n  prev_hash:  {}\n",
        hex::encode(&row.hash),
        hex::encode(&row.prev_hash)
    ));
    if story.len() > 1 {
        s.push_str("\nlifecycle:\n");
        for r in story {
            s.push_str(&format!(
                "  {} {:>8}  {}  {}\n",
                if r.seq == seq { "->" } else { "  " },
                r.seq,
                format_time(r.time_ms),
                describe(r)
            ));
        }
    }
    s
}
