//! The database behind the log: SQLite (WAL) or PostgreSQL through sqlx, one schema
//! (`interceptor/migrations/{sqlite,postgres}`), embedded and applied on open.
//!
//! Every write transaction first takes the database's write lock (SQLite `BEGIN
//! IMMEDIATE`, PostgreSQL `SELECT ... FOR UPDATE` on the `audit_chain` row), then reads
//! the chain head inside it. So even two processes writing at once (the daemon and `audit
//! prune`) extend one linear chain; a writer that cannot get the lock within the busy
//! timeout gets [`AuditError::Locked`].
//!
//! SQL is shared between the dialects where it can be (`$N` placeholders work in both);
//! [`with_pool!`] runs the same code against whichever pool is open.

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use futures_core::future::BoxFuture;
use sqlx::{
    ColumnIndex, Decode, Row, Type,
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};
use tracing::{debug, info, warn};

use super::{
    AuditError,
    chain::{self, ChainPoint, ChainState, Verifier, VerifyReport},
    query::{Filter, SqlValue},
    record::{AuditEvent, Columns, NewEntry, PruneAudit, StoredRow},
};

/// Where the daemon keeps its log unless told otherwise.
pub const DEFAULT_SQLITE_PATH: &str = "/var/lib/interceptor/audit.db";

/// Rows per multi-row INSERT statement (18 parameters each; well under both databases'
/// limits, and one prepared statement reused for every full chunk).
const ROWS_PER_INSERT: usize = 256;

/// Rows per batch read by `verify` and exports.
const READ_BATCH: i64 = 5000;

const COLUMNS: &str = "seq, time_ms, kind, agent, pid, operation, binary_path, path, action, outcome, rule, controls, decided_by, approver, ref_seq, payload, prev_hash, hash";

/// Which database holds the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// A SQLite file (WAL mode).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://user@host:port/db`).
    Postgres(String),
}

impl AuditTarget {
    /// For messages: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            AuditTarget::Sqlite(p) => p.display().to_string(),
            AuditTarget::Postgres(url) => redact_url(url),
        }
    }
}

/// SQLite's `synchronous` setting for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at WAL checkpoints: a power loss can lose the last transactions, never corrupt.
    #[default]
    Normal,
    /// fsync every commit: nothing committed is lost, at a cost per commit.
    Full,
}

/// How to open the log.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub target: AuditTarget,
    /// SQLite only.
    pub synchronous: Synchronous,
    /// How long a writer waits for another one's lock before [`AuditError::Locked`].
    pub busy_timeout: Duration,
    /// Create the database (and its directory) when missing, and apply migrations. The
    /// daemon does; the CLI never does (a typo must not create an empty log).
    pub create: bool,
    /// SQLite only: cap the file at this many pages (`max_page_count`); writes past it fail
    /// with [`AuditError::Full`].
    pub sqlite_max_pages: Option<u64>,
}

impl StoreOptions {
    pub fn new(target: AuditTarget) -> Self {
        Self {
            target,
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            create: true,
            sqlite_max_pages: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the open pool, whichever database it is.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// An open audit database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    target: String,
}

/// A row ready to be chained: everything but seq and hashes.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub time_ms: i64,
    pub columns: Columns,
    pub ref_seq: Option<i64>,
    pub payload: String,
}

impl Prepared {
    pub fn new(entry: &NewEntry) -> Self {
        Self {
            time_ms: i64::try_from(entry.time_ms).unwrap_or(i64::MAX),
            columns: entry.event.columns(),
            ref_seq: entry.ref_seq.and_then(|s| i64::try_from(s).ok()),
            payload: serde_json::to_string(&entry.event).expect("audit events serialize"),
        }
    }
}

/// A chained row, about to be inserted.
struct Chained<'a> {
    seq: i64,
    row: &'a Prepared,
    prev: [u8; 32],
    hash: [u8; 32],
}

/// What `prune` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    pub pruned_rows: u64,
    /// The new anchor (the last pruned row); `None` when nothing was old enough.
    pub anchor: Option<ChainPoint>,
    /// The prune record appended to the chain.
    pub record: Option<ChainPoint>,
}

impl Store {
    /// Opens (and with `create`, creates and migrates) the log.
    pub async fn open(opts: &StoreOptions) -> Result<Self, AuditError> {
        let target = opts.target.describe();
        let pool = match &opts.target {
            AuditTarget::Sqlite(path) => Pool::Sqlite(open_sqlite(path, opts, &target).await?),
            AuditTarget::Postgres(url) => {
                let connect: PgConnectOptions =
                    url.parse().map_err(|e| AuditError::Connection {
                        target: target.clone(),
                        message: format!("bad PostgreSQL URL: {e}"),
                    })?;
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(connect)
                    .await
                    .map_err(|e| AuditError::classify(&target, e))?;
                Pool::Postgres(pool)
            }
        };
        let store = Self { pool, target };
        if opts.create {
            store.migrate().await?;
        } else if !store.has_schema().await? {
            return Err(AuditError::Missing {
                target: store.target.clone(),
                hint: " (the database exists but holds no audit log)".into(),
            });
        }
        Ok(store)
    }

    /// The log's location, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// `sqlite` or `postgres`.
    pub fn dialect(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    fn err(&self, e: sqlx::Error) -> AuditError {
        AuditError::classify(&self.target, e)
    }

    async fn migrate(&self) -> Result<(), AuditError> {
        let migration_err = |e: sqlx::migrate::MigrateError| {
            // A damaged file surfaces as a database error inside the migration.
            if let sqlx::migrate::MigrateError::Execute(inner) = e {
                return match AuditError::classify(&self.target, inner) {
                    AuditError::Database { target, message } => {
                        AuditError::Migration { target, message }
                    }
                    other => other,
                };
            }
            AuditError::Migration {
                target: self.target.clone(),
                message: e.to_string(),
            }
        };
        let source = Embedded(match self.pool {
            Pool::Sqlite(_) => SQLITE_MIGRATIONS,
            Pool::Postgres(_) => POSTGRES_MIGRATIONS,
        });
        let migrator = Migrator::new(source).await.map_err(migration_err)?;
        with_pool!(self, pool => migrator.run(pool).await.map_err(migration_err))?;
        debug!(target = %self.target, "audit schema up to date");
        Ok(())
    }

    async fn has_schema(&self) -> Result<bool, AuditError> {
        let sql = match self.pool {
            Pool::Sqlite(_) => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_chain'"
            }
            Pool::Postgres(_) => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'audit_chain' AND table_schema = current_schema()"
            }
        };
        let n: i64 = with_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await)
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Appends rows as one transaction and returns where each landed. Nothing is written
    /// unless everything is.
    pub(crate) async fn append(&self, rows: &[Prepared]) -> Result<Vec<ChainPoint>, AuditError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // The transaction is driven by hand rather than by sqlx's `Transaction`: when a
        // COMMIT itself fails (a full disk), sqlx leaves the connection marked as inside a
        // transaction and every later append on it fails, so the log would never recover.
        let points = with_pool!(self, pool => async {
            let mut conn = pool.acquire().await?;
            let begin = if self.is_postgres() { "BEGIN" } else { "BEGIN IMMEDIATE" };
            sqlx::query(begin).execute(&mut *conn).await?;
            let work = async {
                let state = conn.read_chain(self.is_postgres()).await?;
                let points = insert_chained(&mut *conn, &state.head, rows).await?;
                if let Some(last) = points.last() {
                    conn.update_head(last).await?;
                }
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok::<_, sqlx::Error>(points)
            }
            .await;
            if work.is_err() && sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                // Already rolled back by the database, or the connection is unusable: a
                // fresh one replaces it either way.
                conn.close_on_drop();
            }
            work
        }.await)
        .map_err(|e| self.err(e))?;
        Ok(points)
    }

    fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// The recorded head and anchor.
    pub async fn chain_state(&self) -> Result<ChainState, AuditError> {
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(|e| self.err(e))?;
            conn.read_chain(false).await.map_err(|e| self.err(e))
        })
    }

    /// Walks the whole chain in seq order, in one read snapshot, and reports the first break.
    pub async fn verify(&self, external: Option<ChainPoint>) -> Result<VerifyReport, AuditError> {
        let start = Instant::now();
        let pg = self.is_postgres();
        with_pool!(self, pool => {
            let run = async {
                let mut tx = pool.begin().await?;
                if pg {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                        .execute(&mut *tx)
                        .await?;
                }
                let state = tx.read_chain(false).await?;
                let mut verifier = Verifier::new(state, external);
                let sql = format!(
                    "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
                );
                let mut after = 0i64;
                loop {
                    let rows = sqlx::query(&sql)
                        .bind(after)
                        .bind(READ_BATCH)
                        .fetch_all(&mut *tx)
                        .await?;
                    let Some(last) = rows.last() else { break };
                    after = last.try_get("seq")?;
                    for row in &rows {
                        if !verifier.push(&decode_row(row)?) {
                            break;
                        }
                    }
                    if verifier.failed() {
                        break;
                    }
                }
                tx.rollback().await?;
                Ok::<_, sqlx::Error>(verifier.finish(start.elapsed().as_millis() as u64))
            };
            run.await.map_err(|e| self.err(e))
        })
    }

    /// SQLite's own consistency check (`PRAGMA quick_check`); `None` on PostgreSQL, which
    /// checks pages itself.
    pub async fn integrity_problem(&self) -> Result<Option<String>, AuditError> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Ok(None);
        };
        let lines: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok((lines != ["ok"]).then(|| lines.join("; ")))
    }

    /// Rows matching a filter, in seq order (or newest first, see [`Filter::newest_first`]).
    pub async fn query(&self, filter: &Filter) -> Result<Vec<StoredRow>, AuditError> {
        let (clause, values) = filter.where_clause();
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        let mut sql = format!("SELECT {COLUMNS} FROM audit_events{clause} ORDER BY seq {order}");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut rows = with_pool!(self, pool => {
            let mut q = sqlx::query(&sql);
            for v in &values {
                q = match v {
                    SqlValue::Int(i) => q.bind(*i),
                    SqlValue::Text(s) => q.bind(s.as_str()),
                };
            }
            let rows = q.fetch_all(pool).await.map_err(|e| self.err(e))?;
            rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))?
        });
        if filter.newest_first && filter.oldest_first_output {
            rows.reverse();
        }
        Ok(rows)
    }

    /// One row by seq.
    pub async fn row(&self, seq: u64) -> Result<Option<StoredRow>, AuditError> {
        let sql = format!("SELECT {COLUMNS} FROM audit_events WHERE seq = $1");
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        with_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(seq).fetch_optional(pool).await.map_err(|e| self.err(e))?;
            row.as_ref().map(decode_row).transpose().map_err(|e| self.err(e))
        })
    }

    /// A row's story: the row it follows up (if any), that row, and every row that follows
    /// it up, in seq order.
    pub async fn story(&self, seq: u64) -> Result<Vec<StoredRow>, AuditError> {
        let Some(row) = self.row(seq).await? else {
            return Ok(Vec::new());
        };
        let root = row.ref_seq.unwrap_or(row.seq as i64);
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq = $1 OR ref_seq = $1 ORDER BY seq"
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(root).fetch_all(pool).await.map_err(|e| self.err(e))?;
            rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
        })
    }

    /// Number of rows in the log.
    pub async fn count(&self) -> Result<u64, AuditError> {
        let n: i64 = with_pool!(self, pool => sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(pool).await)
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    /// Deletes the rows before the first one at or after `before_ms`, moves the anchor to
    /// the last deleted row, and appends a prune record, all in one transaction. Rows are
    /// removed as a prefix of the chain (never from the middle), so what remains still
    /// verifies from the anchor.
    pub async fn prune(&self, before_ms: u64) -> Result<PruneReport, AuditError> {
        let pg = self.is_postgres();
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        let target = self.target.clone();
        let result = with_pool!(self, pool => {
            let run = async {
                let mut tx = begin_write(pool).await?;
                let state = tx.read_chain(pg).await?;
                let first_kept: Option<i64> =
                    sqlx::query_scalar("SELECT MIN(seq) FROM audit_events WHERE time_ms >= $1")
                        .bind(before)
                        .fetch_one(&mut *tx)
                        .await?;
                let through = first_kept.map_or(state.head.seq as i64, |s| s - 1);
                if through <= state.anchor.seq as i64 {
                    tx.rollback().await?;
                    return Ok(Ok(PruneReport { pruned_rows: 0, anchor: None, record: None }));
                }
                let hash: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = $1")
                        .bind(through)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(hash) = hash.and_then(|h| <[u8; 32]>::try_from(h).ok()) else {
                    tx.rollback().await?;
                    return Ok(Err(AuditError::Database {
                        target: target.clone(),
                        message: format!("row {through} (the last row to prune) is missing or damaged; run `interceptor audit verify`"),
                    }));
                };
                let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
                    .bind(through)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("UPDATE audit_chain SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1")
                    .bind(through)
                    .bind(&hash[..])
                    .execute(&mut *tx)
                    .await?;
                let record = Prepared::new(&NewEntry::now(AuditEvent::Prune(PruneAudit {
                    before_ms,
                    pruned_through_seq: through as u64,
                    pruned_rows: deleted,
                    anchor_hash: hex::encode(hash),
                })));
                let points = insert_chained(&mut *tx, &state.head, std::slice::from_ref(&record)).await?;
                tx.update_head(&points[0]).await?;
                tx.commit().await?;
                Ok(Ok(PruneReport {
                    pruned_rows: deleted,
                    anchor: Some(ChainPoint { seq: through as u64, hash }),
                    record: points.into_iter().next(),
                }))
            };
            run.await
        });
        let report = result.map_err(|e| self.err(e))??;
        if report.pruned_rows > 0 {
            info!(target = %self.target, rows = report.pruned_rows, "audit log pruned");
        }
        Ok(report)
    }

    /// Runs one SQL statement as is. For tests and tools that must reach under the log
    /// (tamper tests); the daemon never calls it.
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, AuditError> {
        with_pool!(self, pool => sqlx::query(sql).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(|e| self.err(e))
    }

    /// Closes the pool (waits for connections to finish). A SQLite log is checkpointed
    /// first, so that after a clean stop every row is in the database file itself (what a
    /// backup or a copy of the file takes) and the write-ahead log is empty.
    pub async fn close(&self) {
        if let Pool::Sqlite(pool) = &self.pool
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await
        {
            warn!(target = %self.target, error = %e, "the audit log's write-ahead log was not checkpointed at close; its rows stay in the -wal file");
        }
        with_pool!(self, pool => pool.close().await)
    }
}

async fn open_sqlite(
    path: &Path,
    opts: &StoreOptions,
    target: &str,
) -> Result<SqlitePool, AuditError> {
    if !path.exists() {
        if !opts.create {
            return Err(AuditError::Missing {
                target: target.to_string(),
                hint: " (give --db PATH or --db-url URL, or set INTERCEPTOR_AUDIT_DB)".into(),
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| AuditError::Unwritable {
                    target: target.to_string(),
                    message: format!("creating {}: {e}", dir.display()),
                })?;
        }
    }
    let mut connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(opts.create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match opts.synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        })
        .busy_timeout(opts.busy_timeout)
        .foreign_keys(false);
    if let Some(pages) = opts.sqlite_max_pages {
        connect = connect.pragma("max_page_count", pages.to_string());
    }
    SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(opts.busy_timeout + Duration::from_secs(5))
        .connect_with(connect)
        .await
        .map_err(|e| match AuditError::classify(target, e) {
            // Opening a file that cannot be created or read says CANTOPEN.
            AuditError::Database { target, message } if message.contains("unable to open") => {
                AuditError::Unwritable { target, message }
            }
            other => other,
        })
}

/// Starts a transaction that holds the write lock from its first statement (on
/// PostgreSQL, [`ChainConn::read_chain`] with `for_update` takes it).
async fn begin_write<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    if DB::NAME == "SQLite" {
        pool.begin_with("BEGIN IMMEDIATE").await
    } else {
        pool.begin().await
    }
}

/// Chains `rows` after `head` and inserts them; returns each row's seq and hash.
async fn insert_chained<C: ChainConn + ?Sized>(
    conn: &mut C,
    head: &ChainPoint,
    rows: &[Prepared],
) -> Result<Vec<ChainPoint>, sqlx::Error> {
    let mut prev = head.hash;
    let mut seq = head.seq as i64;
    let chained: Vec<Chained> = rows
        .iter()
        .map(|row| {
            seq += 1;
            let hash = chain::row_hash(
                seq as u64,
                row.time_ms,
                &row.columns,
                row.ref_seq,
                &row.payload,
                &prev,
            );
            let c = Chained {
                seq,
                row,
                prev,
                hash,
            };
            prev = hash;
            c
        })
        .collect();
    for chunk in chained.chunks(ROWS_PER_INSERT) {
        conn.insert(chunk).await?;
    }
    Ok(chained
        .iter()
        .map(|c| ChainPoint {
            seq: c.seq as u64,
            hash: c.hash,
        })
        .collect())
}

/// The chain's statements on one connection; one impl per database (the bind and decode
/// types differ, the SQL does not).
trait ChainConn {
    /// The `audit_chain` row; `for_update` locks it until the transaction ends.
    fn read_chain(&mut self, for_update: bool) -> BoxFuture<'_, Result<ChainState, sqlx::Error>>;
    fn update_head<'a>(
        &'a mut self,
        head: &'a ChainPoint,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;
    fn insert<'a>(&'a mut self, rows: &'a [Chained<'a>]) -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

macro_rules! chain_conn {
    ($conn:ty, $sqlite:expr) => {
        impl ChainConn for $conn {
            fn read_chain(
                &mut self,
                for_update: bool,
            ) -> BoxFuture<'_, Result<ChainState, sqlx::Error>> {
                Box::pin(async move {
                    let sql = if for_update {
                        "SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chain WHERE id = 1 FOR UPDATE"
                    } else {
                        "SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chain WHERE id = 1"
                    };
                    let row = sqlx::query(sql).fetch_one(&mut *self).await?;
                    let point = |seq: &str, hash: &str| -> Result<ChainPoint, sqlx::Error> {
                        let s: i64 = row.try_get(seq)?;
                        let h: Vec<u8> = row.try_get(hash)?;
                        Ok(ChainPoint {
                            seq: s as u64,
                            hash: <[u8; 32]>::try_from(h.as_slice()).map_err(|_| {
                                sqlx::Error::Decode(
                                    format!("audit_chain.{hash} is not 32 bytes").into(),
                                )
                            })?,
                        })
                    };
                    Ok(ChainState {
                        head: point("head_seq", "head_hash")?,
                        anchor: point("anchor_seq", "anchor_hash")?,
                    })
                })
            }

            fn update_head<'a>(
                &'a mut self,
                head: &'a ChainPoint,
            ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query("UPDATE audit_chain SET head_seq = $1, head_hash = $2 WHERE id = 1")
                        .bind(head.seq as i64)
                        .bind(&head.hash[..])
                        .execute(&mut *self)
                        .await?;
                    Ok(())
                })
            }

            fn insert<'a>(
                &'a mut self,
                rows: &'a [Chained<'a>],
            ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    let sql = insert_sql(rows.len(), $sqlite);
                    let mut q = sqlx::query(&sql);
                    for c in rows {
                        let col = &c.row.columns;
                        q = q
                            .bind(c.seq)
                            .bind(c.row.time_ms)
                            .bind(col.kind.as_str())
                            .bind(col.agent.as_deref())
                            .bind(col.pid)
                            .bind(col.operation.as_deref())
                            .bind(col.binary.as_deref())
                            .bind(col.path.as_deref())
                            .bind(col.action.as_deref())
                            .bind(col.outcome.as_deref())
                            .bind(col.rule.as_deref())
                            .bind(col.controls.as_deref())
                            .bind(col.decided_by.as_deref())
                            .bind(col.approver.as_deref())
                            .bind(c.row.ref_seq)
                            .bind(c.row.payload.as_str())
                            .bind(&c.prev[..])
                            .bind(&c.hash[..]);
                    }
                    q.execute(&mut *self).await?;
                    Ok(())
                })
            }
        }
    };
}

chain_conn!(sqlx::SqliteConnection, true);
chain_conn!(sqlx::PgConnection, false);

/// `INSERT ... VALUES (...), ...` for `n` rows; the full-chunk texts are built once.
/// SQLite gets anonymous `?` parameters: sqlx looks every numbered parameter up by name,
/// which SQLite does by a linear scan, so `$N` would make a 1152-parameter insert
/// quadratic (measured: half the writer's time).
fn insert_sql(n: usize, sqlite: bool) -> Cow<'static, str> {
    static FULL_SQLITE: OnceLock<String> = OnceLock::new();
    static FULL_PG: OnceLock<String> = OnceLock::new();
    let build = |n: usize| {
        let mut sql = format!("INSERT INTO audit_events ({COLUMNS}) VALUES ");
        for r in 0..n {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..18 {
                if c > 0 {
                    sql.push_str(", ");
                }
                if sqlite {
                    sql.push('?');
                } else {
                    sql.push_str(&format!("${}", r * 18 + c + 1));
                }
            }
            sql.push(')');
        }
        sql
    };
    match (n == ROWS_PER_INSERT, sqlite) {
        (true, true) => Cow::Borrowed(FULL_SQLITE.get_or_init(|| build(ROWS_PER_INSERT))),
        (true, false) => Cow::Borrowed(FULL_PG.get_or_init(|| build(ROWS_PER_INSERT))),
        (false, _) => Cow::Owned(build(n)),
    }
}

fn decode_row<'r, R>(row: &'r R) -> Result<StoredRow, sqlx::Error>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let seq: i64 = row.try_get("seq")?;
    Ok(StoredRow {
        seq: seq as u64,
        time_ms: row.try_get("time_ms")?,
        columns: Columns {
            kind: row.try_get("kind")?,
            agent: row.try_get("agent")?,
            pid: row.try_get("pid")?,
            operation: row.try_get("operation")?,
            binary: row.try_get("binary_path")?,
            path: row.try_get("path")?,
            action: row.try_get("action")?,
            outcome: row.try_get("outcome")?,
            rule: row.try_get("rule")?,
            controls: row.try_get("controls")?,
            decided_by: row.try_get("decided_by")?,
            approver: row.try_get("approver")?,
        },
        ref_seq: row.try_get("ref_seq")?,
        payload: row.try_get("payload")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// The migrations, compiled in: the daemon never reads SQL from disk at run time.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "audit log",
    include_str!("../../migrations/sqlite/0001_audit_log.sql"),
)];

const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "audit log",
    include_str!("../../migrations/postgres/0001_audit_log.sql"),
)];

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.split_once('@') {
        Some((auth, host)) => (auth, host),
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("postgres://audit:hunter2@db:5432/log"),
            "postgres://audit:***@db:5432/log"
        );
        assert_eq!(redact_url("postgres://db/log"), "postgres://db/log");
    }

    #[test]
    fn insert_statement_numbers_every_parameter() {
        let sql = insert_sql(2, false);
        assert!(sql.contains("($1, $2,"), "{sql}");
        assert!(sql.ends_with("$35, $36)"), "{sql}");
        assert_eq!(insert_sql(2, true).matches('?').count(), 36);
        assert_eq!(
            insert_sql(ROWS_PER_INSERT, true).matches('(').count(),
            ROWS_PER_INSERT + 1
        );
    }
}
