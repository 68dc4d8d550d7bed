//! The approval state that must outlive the daemon: requests (with their deadlines, so a
//! restarted daemon still applies `on_timeout`), review tokens (hashed) and the CSRF key.
//! One local SQLite file (`/var/lib/interceptor/approvals.db`), whatever backs the audit
//! log.
//!
//! Every change is one transaction taken with `BEGIN IMMEDIATE`, and a request leaves
//! `pending` only through [`ApprovalStore::finish`], whose `WHERE state = 'pending'`
//! makes exactly one of two concurrent answers win.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::token::TokenHash;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS request (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pid INTEGER NOT NULL,
        start_ticks INTEGER NOT NULL,
        operation TEXT NOT NULL,
        state TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        deadline_ms INTEGER NOT NULL,
        on_timeout TEXT NOT NULL,
        notice TEXT NOT NULL,
        decided_by TEXT,
        decided_ms INTEGER,
        channel TEXT,
        comment TEXT
    )",
    "CREATE INDEX IF NOT EXISTS request_state ON request(state)",
    "CREATE TABLE IF NOT EXISTS token (
        hash BLOB PRIMARY KEY,
        request INTEGER NOT NULL,
        reviewer TEXT NOT NULL,
        used_ms INTEGER
    )",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
];

/// A request's state in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    /// Nobody answered in time; `on_timeout` applied.
    Expired,
    /// The held task went away (killed by someone else, or exited) before an answer.
    Cancelled,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Expired => "expired",
            RequestState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => RequestState::Pending,
            "approved" => RequestState::Approved,
            "denied" => RequestState::Denied,
            "expired" => RequestState::Expired,
            "cancelled" => RequestState::Cancelled,
            other => return Err(StoreError::Corrupt(format!("request state {other:?}"))),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("approval state {path}: {message}")]
    Open { path: String, message: String },
    #[error("approval state: {0}")]
    Database(#[from] sqlx::Error),
    #[error("approval state is damaged: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Token(#[from] super::token::TokenError),
}

/// What is stored about a new request.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub pid: u32,
    pub start_ticks: u64,
    pub operation: String,
    pub created_ms: u64,
    pub deadline_ms: u64,
    pub on_timeout: String,
}

/// A request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub id: u64,
    pub pid: u32,
    pub start_ticks: u64,
    pub operation: String,
    pub state: RequestState,
    pub created_ms: u64,
    pub deadline_ms: u64,
    pub on_timeout: String,
    /// The [`super::Notice`] as JSON.
    pub notice: String,
    pub decided_by: Option<String>,
}

/// A presented token, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub request: StoredRequest,
    pub reviewer: String,
    pub used_ms: Option<u64>,
}

/// How a request is closed.
#[derive(Debug, Clone)]
pub struct Closing<'a> {
    pub state: RequestState,
    pub decided_by: &'a str,
    pub channel: &'a str,
    pub comment: Option<&'a str>,
    pub now_ms: u64,
    /// The review token the answer came with: used up in the same transaction.
    pub token: Option<TokenHash>,
}

pub struct ApprovalStore {
    pool: SqlitePool,
    csrf_key: [u8; 32],
}

impl ApprovalStore {
    /// Opens (creating if needed) the state database at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let open_err = |message: String| StoreError::Open {
            path: shown.clone(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| open_err(format!("creating {}: {e}", dir.display())))?;
        }
        let url = format!("sqlite://{}", path.display());
        let connect = SqliteConnectOptions::from_str(&url)
            .map_err(|e| open_err(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        // One connection: the daemon's decisions are serialized anyway, and one writer
        // cannot deadlock with itself.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| open_err(format!("chmod 600: {e}")))?;
        let csrf_key = match sqlx::query("SELECT value FROM meta WHERE key = 'csrf_key'")
            .fetch_optional(&pool)
            .await?
        {
            Some(row) => {
                let value: Vec<u8> = row.try_get(0)?;
                value
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("csrf_key is not 32 bytes".into()))?
            }
            None => {
                let key = super::token::new_key()?;
                sqlx::query("INSERT INTO meta (key, value) VALUES ('csrf_key', ?)")
                    .bind(key.to_vec())
                    .execute(&pool)
                    .await?;
                key
            }
        };
        Ok(ApprovalStore { pool, csrf_key })
    }

    pub fn csrf_key(&self) -> &[u8; 32] {
        &self.csrf_key
    }

    /// Stores a new pending request and its reviewers' tokens in one transaction.
    /// `notice` gets the new id and returns the notice JSON to keep.
    pub async fn create(
        &self,
        new: &NewRequest,
        tokens: &[(TokenHash, String)],
        notice: impl FnOnce(u64) -> String,
    ) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result: Result<u64, StoreError> = async {
            let id: i64 = sqlx::query(
                "INSERT INTO request (pid, start_ticks, operation, state, created_ms, deadline_ms, on_timeout, notice)
                 VALUES (?, ?, ?, 'pending', ?, ?, ?, '') RETURNING id",
            )
            .bind(i64::from(new.pid))
            .bind(new.start_ticks as i64)
            .bind(&new.operation)
            .bind(new.created_ms as i64)
            .bind(new.deadline_ms as i64)
            .bind(&new.on_timeout)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
            let id = id as u64;
            insert_tokens(&mut conn, id, tokens).await?;
            sqlx::query("UPDATE request SET notice = ? WHERE id = ?")
                .bind(notice(id))
                .bind(id as i64)
                .execute(&mut *conn)
                .await?;
            Ok(id)
        }
        .await;
        finish_tx(&mut conn, result).await
    }

    /// Closes a pending request. `Ok(false)`: it was not pending any more (another answer,
    /// a timeout or a cancellation came first), or the token was already used; nothing
    /// changed.
    pub async fn finish(&self, id: u64, closing: &Closing<'_>) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result: Result<bool, StoreError> = async {
            if let Some(hash) = &closing.token
                && !mark_used(&mut conn, id, hash, closing.now_ms).await?
            {
                return Ok(false);
            }
            let closed = sqlx::query(
                "UPDATE request SET state = ?, decided_by = ?, decided_ms = ?, channel = ?, comment = ?
                 WHERE id = ? AND state = 'pending'",
            )
            .bind(closing.state.as_str())
            .bind(closing.decided_by)
            .bind(closing.now_ms as i64)
            .bind(closing.channel)
            .bind(closing.comment)
            .bind(id as i64)
            .execute(&mut *conn)
            .await?;
            Ok(closed.rows_affected() == 1)
        }
        .await;
        match result {
            // Nothing to keep: roll back a token marked used for a request already closed.
            Ok(false) => {
                sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                Ok(false)
            }
            other => finish_tx(&mut conn, other).await,
        }
    }

    /// Adds review tokens to a pending request (escalation). `Ok(false)`: it is not pending
    /// any more; nothing was added.
    pub async fn add_tokens(
        &self,
        id: u64,
        tokens: &[(TokenHash, String)],
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result: Result<bool, StoreError> = async {
            let pending = sqlx::query("SELECT 1 FROM request WHERE id = ? AND state = 'pending'")
                .bind(id as i64)
                .fetch_optional(&mut *conn)
                .await?
                .is_some();
            if !pending {
                return Ok(false);
            }
            insert_tokens(&mut conn, id, tokens).await?;
            Ok(true)
        }
        .await;
        match result {
            Ok(false) => {
                sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                Ok(false)
            }
            other => finish_tx(&mut conn, other).await,
        }
    }

    /// Marks a review token used without closing its request (an approval toward a
    /// quorum). `Ok(false)`: it was used already, or belongs to another request.
    pub async fn use_token(
        &self,
        id: u64,
        hash: &TokenHash,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        mark_used(&mut conn, id, hash, now_ms).await
    }

    /// The token with this hash, with its request.
    pub async fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS}, t.reviewer, t.used_ms FROM token t JOIN request r ON r.id = t.request WHERE t.hash = ?"
        ))
        .bind(hash.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(TokenRecord {
                request: request_of(&row)?,
                reviewer: row.try_get("reviewer")?,
                used_ms: row.try_get::<Option<i64>, _>("used_ms")?.map(|v| v as u64),
            })
        })
        .transpose()
    }

    pub async fn request(&self, id: u64) -> Result<Option<StoredRequest>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM request r WHERE r.id = ?"
        ))
        .bind(id as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| request_of(&r)).transpose()
    }

    /// Requests still pending (for a restarted daemon).
    pub async fn pending(&self) -> Result<Vec<StoredRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM request r WHERE r.state = 'pending' ORDER BY r.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request_of).collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const REQUEST_COLUMNS: &str = "r.id, r.pid, r.start_ticks, r.operation, r.state, r.created_ms, r.deadline_ms, r.on_timeout, r.notice, r.decided_by";

fn request_of(row: &sqlx::sqlite::SqliteRow) -> Result<StoredRequest, StoreError> {
    Ok(StoredRequest {
        id: row.try_get::<i64, _>("id")? as u64,
        pid: row.try_get::<i64, _>("pid")? as u32,
        start_ticks: row.try_get::<i64, _>("start_ticks")? as u64,
        operation: row.try_get("operation")?,
        state: RequestState::parse(&row.try_get::<String, _>("state")?)?,
        created_ms: row.try_get::<i64, _>("created_ms")? as u64,
        deadline_ms: row.try_get::<i64, _>("deadline_ms")? as u64,
        on_timeout: row.try_get("on_timeout")?,
        notice: row.try_get("notice")?,
        decided_by: row.try_get("decided_by")?,
    })
}

/// Stores request `id`'s review tokens (hashes) with their reviewers.
async fn insert_tokens(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    id: u64,
    tokens: &[(TokenHash, String)],
) -> Result<(), StoreError> {
    for (hash, reviewer) in tokens {
        sqlx::query("INSERT INTO token (hash, request, reviewer) VALUES (?, ?, ?)")
            .bind(hash.to_vec())
            .bind(id as i64)
            .bind(reviewer)
            .execute(&mut **conn)
            .await?;
    }
    Ok(())
}

/// Marks request `id`'s token `hash` used; `false` when it was used already or is not
/// this request's.
async fn mark_used(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    id: u64,
    hash: &TokenHash,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let used = sqlx::query(
        "UPDATE token SET used_ms = ? WHERE hash = ? AND request = ? AND used_ms IS NULL",
    )
    .bind(now_ms as i64)
    .bind(hash.to_vec())
    .bind(id as i64)
    .execute(&mut **conn)
    .await?;
    Ok(used.rows_affected() == 1)
}

/// COMMIT on success, ROLLBACK on error (driven by hand: a failed COMMIT must not leave
/// the connection inside a transaction).
async fn finish_tx<T>(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => match sqlx::query("COMMIT").execute(&mut **conn).await {
            Ok(_) => Ok(value),
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut **conn).await;
                Err(e.into())
            }
        },
        Err(e) => {
            if sqlx::query("ROLLBACK").execute(&mut **conn).await.is_err() {
                conn.close_on_drop();
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::token::Token;
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("approvals-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn new_request(pid: u32) -> NewRequest {
        NewRequest {
            pid,
            start_ticks: 77,
            operation: "exec".into(),
            created_ms: 1_000,
            deadline_ms: 301_000,
            on_timeout: "deny".into(),
        }
    }

    fn closing(state: RequestState, by: &str, token: Option<TokenHash>) -> Closing<'_> {
        Closing {
            state,
            decided_by: by,
            channel: "review-page",
            comment: Some("ok"),
            now_ms: 2_000,
            token,
        }
    }

    #[tokio::test]
    async fn requests_and_tokens_survive_a_reopen() {
        let d = dir("reopen");
        let path = d.join("approvals.db");
        let alice = Token::generate().unwrap();
        let (id, key) = {
            let store = ApprovalStore::open(&path).await.unwrap();
            let id = store
                .create(&new_request(10), &[(alice.hash(), "alice".into())], |id| {
                    format!("{{\"id\":{id}}}")
                })
                .await
                .unwrap();
            let key = *store.csrf_key();
            store.close().await;
            (id, key)
        };
        let store = ApprovalStore::open(&path).await.unwrap();
        assert_eq!(store.csrf_key(), &key, "the CSRF key is kept");
        let pending = store.pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, id);
        assert_eq!(pending[0].deadline_ms, 301_000);
        assert_eq!(pending[0].notice, format!("{{\"id\":{id}}}"));
        let found = store.token(&alice.hash()).await.unwrap().unwrap();
        assert_eq!((found.reviewer.as_str(), found.request.id), ("alice", id));
        assert!(found.used_ms.is_none());
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn exactly_one_answer_wins_and_tokens_are_single_use() {
        let d = dir("once");
        let store = ApprovalStore::open(&d.join("a.db")).await.unwrap();
        let alice = Token::generate().unwrap();
        let bob = Token::generate().unwrap();
        let id = store
            .create(
                &new_request(11),
                &[(alice.hash(), "alice".into()), (bob.hash(), "bob".into())],
                |_| "{}".into(),
            )
            .await
            .unwrap();
        let approve = closing(RequestState::Approved, "alice", Some(alice.hash()));
        let deny = closing(RequestState::Denied, "bob", Some(bob.hash()));
        let (a, b) = tokio::join!(store.finish(id, &approve), store.finish(id, &deny));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a ^ b, "exactly one of approve ({a}) and deny ({b}) wins");
        let state = store.request(id).await.unwrap().unwrap();
        let loser = if a { &bob } else { &alice };
        assert!(
            store
                .token(&loser.hash())
                .await
                .unwrap()
                .unwrap()
                .used_ms
                .is_none(),
            "the losing token is not burnt by a request that was already closed"
        );
        assert_eq!(
            state.state,
            if a {
                RequestState::Approved
            } else {
                RequestState::Denied
            }
        );
        // Replays of the winning token change nothing.
        let winner = if a { &alice } else { &bob };
        assert!(
            !store
                .finish(id, &closing(RequestState::Denied, "x", Some(winner.hash())))
                .await
                .unwrap()
        );
        // A timeout after the answer changes nothing either.
        assert!(
            !store
                .finish(id, &closing(RequestState::Expired, "timeout", None))
                .await
                .unwrap()
        );
        // A token of another request does not close this one.
        let id2 = store
            .create(&new_request(12), &[], |_| "{}".into())
            .await
            .unwrap();
        assert!(
            !store
                .finish(
                    id2,
                    &closing(RequestState::Approved, "bob", Some(loser.hash()))
                )
                .await
                .unwrap()
        );
        assert_eq!(
            store.request(id2).await.unwrap().unwrap().state,
            RequestState::Pending
        );
        assert!(
            store
                .token(&Token::generate().unwrap().hash())
                .await
                .unwrap()
                .is_none()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
